"""The one partitioning of every per-chunk asset (a dynamic partition per chunk of chats), and how
runs target several chunks at once."""

from collections.abc import Sequence

import dagster as dg

chat_chunks = dg.DynamicPartitionsDefinition(name="chat_chunks")

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
BACKFILL_TAG = "dagster/backfill"
SYNC_TAG = "wahaflow/sync"
"""Tags that group runs: the runs of one backfill, or of one `wahaflow sync`, share a spool."""


def batches(all_keys: Sequence[str], wanted: Sequence[str], size: int) -> list[list[str]]:
    """Split `wanted` into runs of at most `size` keys that are contiguous in `all_keys`' order."""
    wanted_set = set(wanted)
    ordered = [k for k in all_keys if k in wanted_set]
    position = {k: i for i, k in enumerate(all_keys)}
    out: list[list[str]] = []
    for key in ordered:
        current = out[-1] if out else None
        if current and len(current) < size and position[key] == position[current[-1]] + 1:
            current.append(key)
        else:
            out.append([key])
    return out


def partition_tags(keys: Sequence[str]) -> dict[str, str]:
    """Run tags that target `keys` (contiguous in the instance's key order)."""
    if len(keys) == 1:
        return {"dagster/partition": keys[0]}
    return {RANGE_START: keys[0], RANGE_END: keys[-1]}
