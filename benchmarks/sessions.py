"""Benchmark of the session rule alone (`wahaflow.sessions.derive_sessions`) on synthetic messages.

    .venv/bin/python -m benchmarks.sessions            # 10M messages, ~200k chats (target: < 3 s)
    .venv/bin/python -m benchmarks.sessions --quick    # 1M messages, ~20k chats

The data is realistic in shape: heavy-tailed chat sizes (Pareto, the largest chat holds a few percent
of all messages), 1:1 and group chat ids, WEBJS-style message ids, and bursty timing: 35% of the
messages share the previous one's second (ties), most follow within minutes, ~10% after hours or
days (a new session). Two input layouts: "grouped", as the WAHA client produces it (chat after chat,
each newest first), and "shuffled" (random row order, the worst case for the sort and the gathers).
Only `derive_sessions` is timed (best of `repeat`); generating the data is not. `peak_extra_mib` is
the peak resident memory one call needs on top of its input (see `measure_peak_memory`).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from wahaflow.schemas import MESSAGES, conform
from wahaflow.sessions import derive_sessions

GAP_SECONDS = 30 * 60
TARGET_SECONDS = 3.0


def _mix(x: pl.Expr) -> pl.Expr:
    """splitmix64 of a UInt64 expression: deterministic pseudo-random bits, the same in any version."""
    z = x.cast(pl.UInt64) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019
    z = (z ^ (z // 2**30)) * 0xBF58476D1CE4E5B9
    z = (z ^ (z // 2**27)) * 0x94D049BB133111EB
    return z ^ (z // 2**31)


def _uniform(bits: pl.Expr) -> pl.Expr:
    """A float in [0, 1) from 64 random bits."""
    return (bits // 2**11).cast(pl.Float64) / 2.0**53


def _digits(index: pl.Expr, width: int) -> pl.Expr:
    """`width` scrambled digits, distinct for distinct indexes (a multiplier coprime to 10 is a bijection)."""
    return ((index * 2_654_435_761 + 12_345) % 10**width).cast(pl.String).str.zfill(width)


def synthetic_messages(
    n_messages: int, n_chats: int, *, seed: int = 7, layout: str = "grouped"
) -> pl.DataFrame:
    """`n_messages` MESSAGES rows over `n_chats` chats (see the module docstring)."""
    chats = (
        pl.DataFrame({"chat": pl.int_range(n_chats, eager=True, dtype=pl.UInt64)})
        .with_columns(r=_mix(pl.col("chat") + seed * 1_000_003))
        .with_columns(weight=(1.0 - _uniform(pl.col("r"))).pow(-1 / 1.1))  # Pareto, alpha 1.1
        .with_columns(
            size=(pl.col("weight") / pl.col("weight").sum() * n_messages).floor().cast(pl.Int64).clip(1)
        )
    )
    # Make the sizes add up exactly: the largest chat absorbs the rounding.
    extra = n_messages - chats["size"].sum()
    chats = chats.with_columns(
        size=pl.when(pl.int_range(pl.len()) == chats["size"].arg_max())
        .then(pl.col("size") + extra)
        .otherwise("size")
    ).with_columns(
        first_row=pl.col("size").cum_sum() - pl.col("size"),
        base=(pl.col("r") % 100_000_000).cast(pl.Int64) + 1_600_000_000,
        # Long gaps (new sessions) shrink in busy chats, so that even the busiest spans years, not centuries.
        long_gap_range=(20 * (3 * 365 * 86400 / pl.col("size") - 165)).clip(3600, 6 * 86400).cast(pl.UInt64),
        chat_id=pl.when(pl.col("r") % 100 < 15)
        .then(pl.format("120363{}@g.us", _digits(pl.col("chat"), 12)))
        .otherwise(pl.format("55{}@c.us", _digits(pl.col("chat"), 11))),
    )
    msgs = (
        chats.select(pl.col("chat").repeat_by("size").explode())
        .with_row_index("i")
        .join(chats.drop("r", "weight", "size"), on="chat", maintain_order="left")
        .with_columns(r=_mix(pl.col("i").cast(pl.UInt64) + (seed + 1) * 2**40))
        .with_columns(u=_uniform(pl.col("r")))
        .with_columns(
            # 35% ties with the previous message, 55% within 10 minutes, 10% after a long gap.
            gap=pl.when(pl.col("u") < 0.35)
            .then(0)
            .when(pl.col("u") < 0.90)
            .then(pl.col("r") // 1000 % 600 + 1)
            .otherwise(1801 + pl.col("r") // 1000 % pl.col("long_gap_range"))
            .cast(pl.Int64)
        )
        .with_columns(ts=pl.col("gap").cum_sum())
        # Rows are chat after chat: restart the running time at each chat's first row.
        .with_columns(ts=pl.col("ts") - pl.col("ts").gather(pl.col("first_row")) + pl.col("base"))
    )
    from_me = pl.col("r") % 100 < 45
    frame = msgs.select(
        waha_session=pl.lit("default"),
        message_id=pl.format(
            "{}_{}_3EB0{}",
            pl.when(from_me).then(pl.lit("true")).otherwise(pl.lit("false")),
            "chat_id",
            (pl.col("r") // 3 % 10**16).cast(pl.String).str.zfill(16),
        ),
        chat_id="chat_id",
        sent_at=pl.from_epoch("ts", "s").dt.replace_time_zone("UTC"),
        from_me=from_me,
        sender_id=pl.when(from_me).then(pl.lit("5511999990000@c.us")).otherwise("chat_id"),
        body=pl.format("message body number {}", pl.col("r") % 1_000_003),
        has_media=pl.col("r") % 10 == 0,
        ack=(pl.col("r") % 4).cast(pl.Int16),
        chunk_key=pl.format("chunk-{}", (pl.col("chat") // 100).cast(pl.String).str.zfill(5)),
        chat="chat",
    )
    if layout == "grouped":  # as fetched: chat after chat, each chat's pages newest first
        frame = frame.sort("chat", "sent_at", descending=[False, True])
    elif layout == "shuffled":
        frame = frame.sample(fraction=1.0, shuffle=True, seed=seed)
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return conform(frame.drop("chat"), MESSAGES).rechunk()  # columns it lacks (edits, ...) stay null


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure_time(messages: pl.DataFrame, *, repeat: int = 3) -> dict:
    """Best wall time of `derive_sessions` over `repeat` calls, and that call's CPU time."""
    best = cpu = float("inf")
    for _ in range(repeat):
        gc.collect()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        _, sessions = derive_sessions(messages, GAP_SECONDS)
        wall, used = time.perf_counter() - wall0, time.process_time() - cpu0
        if wall < best:
            best, cpu = wall, used
    return {"seconds": round(best, 3), "cpu_seconds": round(cpu, 3), "sessions": sessions.height}


def _peak_memory_child(n_messages: int, n_chats: int, layout: str) -> None:
    """Run in a fresh process: print the extra resident memory (MiB) that one call needed at its peak."""
    messages = synthetic_messages(n_messages, n_chats, layout=layout)
    gc.collect()
    before = _proc_status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
    derive_sessions(messages, GAP_SECONDS)
    print(json.dumps({"peak_mib": round((_proc_status_kib("VmHWM") - before) / 1024)}))


def measure_peak_memory(n_messages: int, n_chats: int, layout: str) -> int | None:
    """Peak extra MiB of one `derive_sessions` call, measured in a child process.

    Polars' allocator (jemalloc) keeps freed pages, which would hide most of a second call's
    allocations, so the child runs with page reuse delays off: its resident set follows the live
    data. (That slows it down, so the time is measured here, with the normal settings.)
    """
    env = dict(os.environ, _RJEM_MALLOC_CONF="dirty_decay_ms:0,muzzy_decay_ms:0")
    args = [sys.executable, "-m", "benchmarks.sessions", "--peak-memory-child", layout]
    args += [str(n_messages), str(n_chats)]
    root = Path(__file__).resolve().parents[1]  # where `benchmarks` imports from
    done = subprocess.run(args, env=env, cwd=root, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        return None
    return json.loads(done.stdout.splitlines()[-1])["peak_mib"]


def run(n_messages: int = 10_000_000, n_chats: int = 200_000, *, repeat: int = 3) -> list[dict]:
    """One row per input layout: size, sessions, best seconds (target 3 s), CPU seconds, peak MiB."""
    results = []
    for layout in ("grouped", "shuffled"):
        messages = synthetic_messages(n_messages, n_chats, layout=layout)
        row = {
            "benchmark": "sessions",
            "layout": layout,
            "messages": messages.height,
            "chats": n_chats,
            "input_mib": round(messages.estimated_size("mb")),
        }
        row.update(measure_time(messages, repeat=repeat))
        del messages
        row["peak_extra_mib"] = measure_peak_memory(n_messages, n_chats, layout)
        row["target_seconds"] = TARGET_SECONDS
        results.append(row)
    return results


def _print_table(rows: list[dict]) -> None:
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.rjust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r[c]).rjust(widths[c]) for c in columns))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M messages over 20k chats")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--peak-memory-child", nargs=3, metavar=("LAYOUT", "MESSAGES", "CHATS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.peak_memory_child:
        layout, n_messages, n_chats = args.peak_memory_child
        _peak_memory_child(int(n_messages), int(n_chats), layout)
    else:
        scale = 10 if args.quick else 1
        _print_table(run(10_000_000 // scale, 200_000 // scale, repeat=args.repeat))
