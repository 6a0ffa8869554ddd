"""Benchmark of the webhook receiver: events/s and latency over loopback, into real Postgres.

    .venv/bin/python -m benchmarks.webhook              # 20,000 events per case
    .venv/bin/python -m benchmarks.webhook --quick      # 4,000 events per case

The receiver runs as `wahaflow webhook` in a SEPARATE process (uvicorn + httptools, HMAC on), so the
load generator does not share its GIL; the generator is a minimal keep-alive HTTP/1.1 client on raw
asyncio (cheaper per request than an HTTP library, so it measures the receiver, not the client).
Events are WEBJS-shaped `message.any` envelopes (~1.3 kB, signed), 5% of them replays of an earlier
event (answered 200, stored once). Cases:

- `closed loop c=N`: N connections, each sending its next event as soon as the previous is answered:
  the receiver's maximum throughput at that concurrency.
- `open loop R/s`: events scheduled at a fixed rate R (the target: 2,000/s) over N connections;
  latency is measured from the scheduled send time, so queueing behind a slow answer is counted.

Every 200 means "committed". After each case the inbox is checked: exactly the distinct events sent.
`receiver CPU µs/event` is the receiver process's CPU time per event (it does not depend on what
else runs on the machine, unlike the wall-clock figures; Postgres' own CPU is not included).
Bounded: at most `--events` per case and `TIMEOUT_SECONDS` per case; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import orjson

from benchmarks.common import PYTHON, REPO, markdown_table, temp_schema

HOST = "127.0.0.1"
KEY = "bench-hmac-key"
TIMEOUT_SECONDS = 120.0
REPLAY_FRACTION = 0.05
TARGET_RATE = 2_000.0
TARGET_P99_MS = 50.0


# ------------------------------------------------------------------------------------------------
# the receiver process


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux `/proc`)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def receiver_process(pg_url: str, schema: str) -> Iterator[tuple[int, int]]:
    """`wahaflow webhook` on a free loopback port, migrated and ready; yields (port, pid)."""
    port = _free_port()
    env = {
        **os.environ,
        "WAHAFLOW_DATABASE_URL": pg_url,
        "WAHAFLOW_SCHEMA": schema,
        "WAHAFLOW_WEBHOOK_HMAC_KEY": KEY,
    }
    proc = subprocess.Popen(
        [str(PYTHON), "-m", "wahaflow.cli", "webhook", "--host", HOST, "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the receiver exited: {proc.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
            with suppress(OSError), socket.create_connection((HOST, port), timeout=1) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if b" 200 " in sock.recv(1024):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the receiver did not become healthy within 60 s")
            time.sleep(0.1)
        yield port, proc.pid
    finally:
        with suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------------------------------------
# the events


def make_requests(n: int, port: int, tag: str) -> tuple[list[bytes], int]:
    """`n` complete HTTP requests (signed `message.any` events, some replays) and the number of
    distinct events among them."""
    requests: list[bytes] = []
    bodies: list[bytes] = []
    every = int(1 / REPLAY_FRACTION)
    for i in range(n):
        if i and i % every == 0:
            body = bodies[i // 2]  # a replay of an earlier event
        else:
            chat = f"4915{i % 5000:08d}@c.us"
            mid = f"false_{chat}_3EB0{tag}{i:016X}"
            envelope = {
                "id": f"evt_{tag}{i:022d}"[:30],
                "timestamp": 1_767_225_600_000 + i,
                "event": "message.any",
                "session": "default",
                "me": {"id": "14155550100@c.us", "pushName": "Bench"},
                "payload": {
                    "id": mid,
                    "timestamp": 1_767_225_600 + i,
                    "from": chat,
                    "fromMe": False,
                    "source": "app",
                    "to": "14155550100@c.us",
                    "body": f"message {i}: " + "lorem ipsum dolor sit amet " * 8,
                    "hasMedia": False,
                    "media": None,
                    "ack": 1,
                    "ackName": "SERVER",
                    "location": None,
                    "vCards": [],
                    "_data": {"id": {"fromMe": False, "remote": chat, "_serialized": mid}, "type": "chat"},
                },
                "engine": "WEBJS",
                "environment": {"version": "2026.7.1", "engine": "WEBJS", "tier": "CORE"},
            }
            body = orjson.dumps(envelope)
        bodies.append(body)
        signature = hmac.new(KEY.encode(), body, hashlib.sha512).hexdigest()
        head = (
            f"POST /webhooks/waha HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Webhook-Hmac: {signature}\r\n\r\n"
        ).encode()
        requests.append(head + body)
    return requests, len(set(bodies))


# ------------------------------------------------------------------------------------------------
# the load generator: keep-alive HTTP/1.1 on raw asyncio


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, port)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def _load(port: int, requests: list[bytes], concurrency: int, rate: float | None) -> dict[str, Any]:
    """Send `requests` over `concurrency` connections, closed loop (`rate` None) or open loop."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    connections = [await _connect(port) for _ in range(concurrency)]
    started = time.perf_counter()

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            index, scheduled = item
            status = await _exchange(reader, writer, requests[index])
            latencies.append(time.perf_counter() - (scheduled or time.perf_counter()))
            statuses[status] = statuses.get(status, 0) + 1

    async def closed_worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, k: int) -> None:
        for index in range(k, len(requests), concurrency):
            sent = time.perf_counter()
            status = await _exchange(reader, writer, requests[index])
            latencies.append(time.perf_counter() - sent)
            statuses[status] = statuses.get(status, 0) + 1

    if rate is None:
        tasks = [asyncio.create_task(closed_worker(r, w, k)) for k, (r, w) in enumerate(connections)]
    else:
        tasks = [asyncio.create_task(worker(r, w)) for r, w in connections]
        for i in range(len(requests)):
            scheduled = started + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((i, scheduled))
        for _ in tasks:
            queue.put_nowait(None)
    await asyncio.gather(*tasks)
    seconds = time.perf_counter() - started
    for _, writer in connections:
        writer.close()
    ordered = sorted(latencies)
    return {
        "events": len(requests),
        "seconds": round(seconds, 2),
        "events/s": round(len(requests) / seconds),
        "p50 ms": round(_percentile(ordered, 0.50) * 1000, 2),
        "p99 ms": round(_percentile(ordered, 0.99) * 1000, 2),
        "max ms": round(ordered[-1] * 1000, 1) if ordered else None,
        "non-200": sum(v for k, v in statuses.items() if k != 200),
    }


def _stored(pg_url: str, schema: str) -> int:
    import psycopg
    from psycopg import sql

    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "inbox"))
        ).fetchone()
    return int(row[0]) if row else 0


def run(
    pg_url: str, events: int = 20_000, concurrency: int = 64, quick: bool = False
) -> list[dict[str, Any]]:
    """Run the cases; one row each (events/s, p50/p99/max latency, non-200 answers, inbox check)."""
    if quick:
        events = min(events, 4_000)
    rows: list[dict[str, Any]] = []
    cases: list[tuple[str, int, float | None]] = [
        (f"closed loop c={concurrency}", concurrency, None),
        (f"open loop {TARGET_RATE:,.0f}/s", concurrency, TARGET_RATE),
    ]
    with temp_schema(pg_url, "bench_webhook") as schema, receiver_process(pg_url, schema) as (port, pid):
        warm, _ = make_requests(500, port, "W")
        asyncio.run(asyncio.wait_for(_load(port, warm, 8, None), TIMEOUT_SECONDS))
        stored = _stored(pg_url, schema)
        for k, (case, conns, rate) in enumerate(cases):
            requests, distinct = make_requests(events, port, f"C{k}")
            cpu = cpu_seconds(pid)
            result = asyncio.run(asyncio.wait_for(_load(port, requests, conns, rate), TIMEOUT_SECONDS))
            cpu = cpu_seconds(pid) - cpu
            now = _stored(pg_url, schema)
            row = {
                "tool": "wahaflow webhook",
                "case": case,
                **result,
                "receiver CPU µs/event": round(cpu / len(requests) * 1e6),
                "stored once": now - stored == distinct,
            }
            if rate is not None:
                row["target met"] = result["p99 ms"] < TARGET_P99_MS and result["events/s"] >= 0.97 * rate
            rows.append(row)
            stored = now
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    from benchmarks.common import bench_database_url

    rows = run(bench_database_url(), args.events, args.concurrency, quick=args.quick)
    print(markdown_table(rows))
    print("BENCH_JSON " + json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
