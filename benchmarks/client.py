"""Section `client`: the WAHA client alone (`WahaClient`, `fetch_chats`, `fetch_chunk`).

For each case (preset, latency per request, concurrency) a child process lists the chats, then
fetches every chat's messages in one `fetch_chunk`; the simulator runs in another process. Reported:
messages fetched per second, requests (the client's count and the server's), wall and CPU time,
peak resident memory of the child, and whether the fetched message ids are exactly the ground truth.

    python -m benchmarks --only client [--quick]
    python -m benchmarks.client --worker          # the child (reads WAHA_URL, WAHA_API_KEY)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
from typing import Any

from benchmarks.common import PYTHON, WAHA_SESSION, Simulator, child_env, rate, run_measured, truth

CASES: list[tuple[str, float, int | None]] = [
    ("big", 0, None),
    ("big", 100, None),
    ("big", 100, 64),
    ("big", 100, 128),
]
"""(preset, latency ms, concurrency; None = `WAHAFLOW_WAHA_CONCURRENCY`, default 32)."""
QUICK_CASES: list[tuple[str, float, int | None]] = [("seed", 0, None), ("seed", 100, None)]
TIMEOUT_S = 300.0


def default_concurrency() -> int:
    """`WAHAFLOW_WAHA_CONCURRENCY`, default 32 (the same default as wahaflow's settings)."""
    return int(os.environ.get("WAHAFLOW_WAHA_CONCURRENCY", "32"))


def ids_digest(ids: list[str]) -> str:
    """md5 over the sorted ids: compares a child's result with the ground truth in one string."""
    return hashlib.md5("\n".join(sorted(ids)).encode()).hexdigest()


async def fetch_everything(url: str, api_key: str | None, concurrency: int) -> dict[str, Any]:
    """List the chats, then fetch every chat's messages; figures of the whole fetch."""
    from wahaflow.waha.client import WahaClient
    from wahaflow.waha.fetch import fetch_chats, fetch_chunk

    started = time.monotonic()
    async with WahaClient(url, api_key, concurrency=concurrency) as client:
        me = await client.session_info(WAHA_SESSION)
        chats, _, _ = await fetch_chats(client, WAHA_SESSION)
        listed = time.monotonic()
        result = await fetch_chunk(client, WAHA_SESSION, me.me_id, chats)
        done = time.monotonic()
        ids = result.messages.get_column("message_id").to_list()
        return {
            "chats": chats.height,
            "messages": len(ids),
            "digest": ids_digest(ids),
            "requests": client.stats.requests,
            "retries": client.stats.retries,
            "list_s": round(listed - started, 3),
            "fetch_s": round(done - listed, 3),
            "wall_s": round(done - started, 3),
        }


def _worker() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--concurrency", type=int, default=default_concurrency())
    args = parser.parse_args()
    url, api_key = os.environ["WAHA_URL"], os.environ.get("WAHA_API_KEY")
    figures = asyncio.run(fetch_everything(url, api_key, args.concurrency))
    print("BENCH_JSON " + json.dumps(figures), flush=True)
    return 0


def run_case(sim: Simulator, concurrency: int) -> dict[str, Any]:
    """One fetch of everything `sim` serves, in a child process; one result row."""
    expected = truth(sim.preset)
    sim.reset()
    measured = run_measured(
        [PYTHON, "-m", "benchmarks.client", "--worker", "--concurrency", str(concurrency)],
        env=child_env(**sim.env()),
        timeout=TIMEOUT_S,
    )
    server_requests = sim.requests()
    row: dict[str, Any] = {
        "preset": sim.preset,
        "latency ms": int(sim.latency_ms),
        "concurrency": concurrency,
    }
    if not measured.ok:
        return row | {"wall s": round(measured.seconds, 2), "correct": False, "note": measured.error()}
    got = measured.bench_json()
    correct = got["messages"] == expected.messages and got["digest"] == ids_digest(list(expected.message_ids))
    return row | {
        "chats": got["chats"],
        "messages": got["messages"],
        "expected": expected.messages,
        "requests": got["requests"],
        "server requests": server_requests,
        "retries": got["retries"],
        "list s": got["list_s"],
        "fetch s": got["fetch_s"],
        "wall s": got["wall_s"],
        "messages/s": rate(got["messages"], got["wall_s"]),
        "process s": round(measured.seconds, 2),
        "cpu s": round(measured.cpu_seconds, 2),
        "peak MB": round(measured.peak_mb),
        "correct": correct,
    }


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Every case (one simulator process per preset; the latency is changed between cases)."""
    default = default_concurrency()
    rows: list[dict[str, Any]] = []
    cases = QUICK_CASES if quick else CASES
    for preset in dict.fromkeys(p for p, _, _ in cases):
        with Simulator(preset) as sim:
            for _, latency, concurrency in (c for c in cases if c[0] == preset):
                sim.set_latency(latency)
                rows.append(run_case(sim, concurrency or default))
                print(
                    f"  client {preset} {latency:g} ms x{concurrency or default}: {rows[-1].get('wall s')} s"
                )
    return rows


if __name__ == "__main__":
    sys.exit(_worker())
