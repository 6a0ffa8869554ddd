"""The one partitioning of every per-chunk asset (a dynamic partition per chunk of chats), and how
runs target several chunks at once."""

from collections.abc import Collection, Mapping, Sequence

import dagster as dg

chat_chunks = dg.DynamicPartitionsDefinition(name="chat_chunks")

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
BACKFILL_TAG = "dagster/backfill"
SYNC_TAG = "wahaflow/sync"
"""Tags that group runs: the runs of one backfill, or of one `wahaflow sync`, share a spool."""


LIGHT_CHUNK_SHARE = 4
"""A chunk with no whole history to fetch (incremental work, inbox events) counts as a quarter of
one: runs pack four times as many of them."""


def batches(
    all_keys: Sequence[str], wanted: Sequence[str], size: int, heavy: Collection[str] | None = None
) -> list[list[str]]:
    """Split `wanted` into runs that are contiguous in `all_keys`' order and hold at most `size`
    chunks' worth of work: with `heavy` given (the chunks with a chat whose whole history is still
    to fetch), the other chunks count as 1/`LIGHT_CHUNK_SHARE` each, so that incremental syncs pay
    Dagster's per-run costs a few times, not once per `size` chunks."""
    wanted_set = set(wanted)
    ordered = [k for k in all_keys if k in wanted_set]
    position = {k: i for i, k in enumerate(all_keys)}
    budget = size * LIGHT_CHUNK_SHARE

    def cost(key: str) -> int:
        return LIGHT_CHUNK_SHARE if heavy is None or key in heavy else 1

    out: list[list[str]] = []
    used = 0
    for key in ordered:
        current = out[-1] if out else None
        if current and used + cost(key) <= budget and position[key] == position[current[-1]] + 1:
            current.append(key)
            used += cost(key)
        else:
            out.append([key])
            used = cost(key)
    return out


def weighted_run(
    all_keys: Sequence[str], pending: Sequence[str], weights: Mapping[str, int], budget: int, max_chunks: int
) -> list[str]:
    """The next run: the first `pending` chunks, contiguous in `all_keys`' order, whose `weights`
    (messages, say) add up to at most `budget`; at least one chunk, at most `max_chunks`."""
    position = {k: i for i, k in enumerate(all_keys)}
    run = [pending[0]]
    used = weights.get(pending[0], 0)
    for key in pending[1:max_chunks]:
        weight = weights.get(key, 0)
        if used + weight > budget or position[key] != position[run[-1]] + 1:
            break
        run.append(key)
        used += weight
    return run


def partition_tags(keys: Sequence[str]) -> dict[str, str]:
    """Run tags that target `keys` (contiguous in the instance's key order)."""
    if len(keys) == 1:
        return {"dagster/partition": keys[0]}
    return {RANGE_START: keys[0], RANGE_END: keys[-1]}
