"""Section `e2e`: `wahaflow sync` end to end, on the same cases as the peers.

Each case runs `.venv/bin/wahaflow sync` as a child process against a simulator process, with its
configuration as shipped: the warehouse and the Dagster instance (runs, events, partitions) in one
Postgres database. That database is fresh for each case (on the bench server, dropped afterwards),
and so is `WAHAFLOW_HOME` (hence the Dagster home under it): nothing leaks between cases. A second
`wahaflow sync` follows at once (nothing new): the incremental cost. On the big account a third one
follows after 1% new messages were added to random chats (`ACTIVITY_SHARE`). Reported: process wall
time, messages/s, requests the simulator answered, peak resident memory, CPU time, the time as a
share of the full import, and the stored rows against the ground truth (exact message and session
ids, no duplicates).
"""

from __future__ import annotations

import tempfile
from typing import Any

from benchmarks.common import (
    REPO,
    Simulator,
    Truth,
    case_name,
    check_warehouse,
    child_env,
    measured_fields,
    run_measured,
    temp_database,
    timed_out_fields,
    truth,
)

WAHAFLOW = REPO / ".venv" / "bin" / "wahaflow"
SCHEMA = "wahaflow"
TIMEOUT_S = 900.0
CASES: list[tuple[str, float]] = [("seed", 0), ("seed", 300), ("big", 0), ("huge", 0)]
ENGINE_CASES: list[tuple[str, float, str, int]] = [("seed", 300, "WEBJS", 32), ("seed", 300, "WEBJS", 16)]
"""Cases on an engine without the account stream (chat by chat), beside the ideal time: requests
needed x latency / `WAHAFLOW_WAHA_CONCURRENCY` (the last field)."""
CONCURRENCY = 32  # WAHAFLOW_WAHA_CONCURRENCY's default
ACTIVITY_CASES = {("big", 0)}
"""Cases followed by a sync after `ACTIVITY_SHARE` new messages (last case of their simulator)."""
ACTIVITY_SHARE = 0.01
QUICK_CASES: list[tuple[str, float]] = [("seed", 0)]


def _row(
    tool: str, case: str, measured: Any, requests: int, check: dict[str, Any], expected: Truth
) -> dict[str, Any]:
    row: dict[str, Any] = {"tool": tool, "case": case}
    if measured.timed_out:
        return row | timed_out_fields(measured, requests, TIMEOUT_S)
    if not measured.ok:
        return row | {
            "wall s": round(measured.seconds, 2),
            "requests": requests,
            "correct": False,
            "note": "not available: " + measured.error(),
        }
    fetched = check["messages"] if tool == "wahaflow" else None
    return row | measured_fields(measured, requests, check, expected, fetched)


def run_case(sim: Simulator, pg_url: str, concurrency: int = CONCURRENCY) -> list[dict[str, Any]]:
    """A first sync and an incremental one (plus one after new activity, for `ACTIVITY_CASES`) into
    a fresh database and WAHAFLOW_HOME, with `concurrency` requests in flight; one row each."""
    expected = truth(sim.preset, sim.engine)
    case = case_name(sim.preset, sim.latency_ms, sim.engine)
    if concurrency != CONCURRENCY:
        case += f", {concurrency} in flight"
    syncs = ["wahaflow", "wahaflow nothing new"]
    if (sim.preset, sim.latency_ms) in ACTIVITY_CASES:
        syncs.append(f"wahaflow {ACTIVITY_SHARE:.0%} new")
    rows: list[dict[str, Any]] = []
    with (
        temp_database(pg_url, "bench_wahaflow") as db_url,
        tempfile.TemporaryDirectory(prefix="wahaflow-bench-") as home,
    ):
        # no DAGSTER_HOME: wahaflow keeps its own under WAHAFLOW_HOME, storing runs in the database
        env = child_env(
            **sim.env(),
            WAHAFLOW_DATABASE_URL=db_url,
            WAHAFLOW_SCHEMA=SCHEMA,
            WAHAFLOW_HOME=home,
            WAHAFLOW_WAHA_CONCURRENCY=str(concurrency),
        )
        note = ""
        for tool in syncs:
            if tool.endswith(" new") and tool != "wahaflow nothing new":
                before = expected.messages
                expected, chats = sim.add_messages(round(ACTIVITY_SHARE * before))
                note = f"{expected.messages - before:,} new messages in {chats:,} chats"
            sim.reset()
            measured = run_measured([WAHAFLOW, "sync"], env=env, timeout=TIMEOUT_S)
            requests = sim.requests()
            check = check_warehouse(db_url, SCHEMA, expected) if measured.ok else {}
            row = _row(tool, case, measured, requests, check, expected)
            if rows and measured.ok and rows[0].get("wall s"):
                row["of full"] = f"{row['wall s'] / rows[0]['wall s']:.0%}"
            if note and row.get("note") == "ok":
                row["note"] = note
            if sim.engine != "NOWEB" and tool == "wahaflow" and measured.ok:
                ideal = requests * sim.latency_ms / 1000 / concurrency
                row["note"] = (
                    f"ideal {ideal:.1f} s ({requests:,} requests x {sim.latency_ms:g} ms / {concurrency}); "
                    f"{row['wall s'] / ideal:.2f}x"
                )
            rows.append(row)
            print(f"  e2e {row['case']} {tool}: {row.get('wall s')} s, correct {row.get('correct')}")
            if not measured.ok:
                break
    return rows


def run(pg_url: str, quick: bool = False) -> list[dict[str, Any]]:
    """Every case; a failing `wahaflow sync` gives a row noted "not available: <error>"."""
    rows: list[dict[str, Any]] = []
    cases = QUICK_CASES if quick else CASES
    for preset in dict.fromkeys(p for p, _ in cases):
        with Simulator(preset) as sim:
            for latency in (lat for p, lat in cases if p == preset):
                sim.set_latency(latency)
                rows.extend(run_case(sim, pg_url))
    for preset, latency, engine, concurrency in [] if quick else ENGINE_CASES:
        with Simulator(preset, latency, engine) as sim:
            rows.extend(run_case(sim, pg_url, concurrency))
    return rows
