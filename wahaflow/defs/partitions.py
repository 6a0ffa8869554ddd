"""The one partitioning of every per-chunk asset: a dynamic partition per chunk of chats."""

import dagster as dg

chat_chunks = dg.DynamicPartitionsDefinition(name="chat_chunks")
