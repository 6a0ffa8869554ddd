"""WAHA client: HTTP, paging, retries, normalization into Polars frames.

- `client.WahaClient`: the HTTP client (pooling, concurrency limit, retries, typed errors, counters);
- `paging`: message history paging that survives every engine (keyset by time, newest first);
- `normalize`: raw JSON -> CHATS / CONTACTS / MESSAGES / REJECTS frames (pure, vectorized);
- `fetch`: the per-chunk fetch (all chats of a chunk in parallel, all or nothing);
- `errors`: the exception hierarchy.
"""

from wahaflow.waha.client import ClientStats, ServerVersion, SessionInfo, WahaClient
from wahaflow.waha.errors import (
    WahaAuthError,
    WahaBadResponse,
    WahaEmptyWindowCrash,
    WahaError,
    WahaFetchError,
    WahaNotFound,
    WahaRequestError,
    WahaSessionNotFound,
    WahaTransientError,
    WahaUnavailable,
)
from wahaflow.waha.fetch import ChunkFetch, FetchStats, fetch_chats, fetch_chunk, fetch_contacts
from wahaflow.waha.paging import ChatMessages, default_until

__all__ = [
    "ChatMessages",
    "ChunkFetch",
    "ClientStats",
    "FetchStats",
    "ServerVersion",
    "SessionInfo",
    "WahaAuthError",
    "WahaBadResponse",
    "WahaClient",
    "WahaEmptyWindowCrash",
    "WahaError",
    "WahaFetchError",
    "WahaNotFound",
    "WahaRequestError",
    "WahaSessionNotFound",
    "WahaTransientError",
    "WahaUnavailable",
    "default_until",
    "fetch_chats",
    "fetch_chunk",
    "fetch_contacts",
]
