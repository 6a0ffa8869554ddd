"""`python -m benchmarks [--only NAME ...] [--quick]`: run the benchmark sections, print one markdown
table per section and a summary, and write `benchmarks/results.json` and `benchmarks/results.md`.

A full run updates only the sections it ran in `results.json` (the others keep their last results);
`--quick` (seed-sized cases, a smoke test) writes `results-quick.json`/`results-quick.md` instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from benchmarks.common import Skipped, bench_database_url, markdown_table, wait_for_quiet

HERE = Path(__file__).resolve().parent
SECTIONS = ("client", "peers", "e2e", "loader", "sessions", "webhook")
SUMMARY_COLUMNS = (
    "tool",
    "case",
    "wall s",
    "wall range s",
    "messages/s",
    "requests",
    "peak MB",
    "correct",
    "x wahaflow",
)


@cache
def _pg_url() -> str:
    """The benchmarks' Postgres, started (embedded) on first use only."""
    return bench_database_url()


def _import(name: str) -> Any:
    """`benchmarks.<name>`, or `Skipped` when it is missing or does not import yet."""
    try:
        return importlib.import_module(f"benchmarks.{name}")
    except ImportError as exc:
        raise Skipped(f"skipped: benchmarks.{name} does not import ({exc})") from exc


def _client(quick: bool) -> list[dict[str, Any]]:
    return _import("client").run(quick=quick)


def _peers(quick: bool) -> list[dict[str, Any]]:
    return _import("peers").run(_pg_url(), quick=quick)


def _e2e(quick: bool) -> list[dict[str, Any]]:
    return _import("e2e").run(_pg_url(), quick=quick)


def _loader(quick: bool) -> list[dict[str, Any]]:
    module = _import("loader")
    return module.run(_pg_url(), 100_000) if quick else module.run(_pg_url())


def _sessions(quick: bool) -> list[dict[str, Any]]:
    module = _import("sessions")
    return module.run(1_000_000, 20_000, repeat=1) if quick else module.run()


def _webhook(quick: bool) -> list[dict[str, Any]]:
    return _import("webhook").run(_pg_url(), quick=quick)


RUNNERS: dict[str, Callable[[bool], list[dict[str, Any]]]] = {
    "client": _client,
    "peers": _peers,
    "e2e": _e2e,
    "loader": _loader,
    "sessions": _sessions,
    "webhook": _webhook,
}


def cpu_reference() -> float:
    """Seconds a fixed pure-Python loop takes now (lower is faster). This VM's speed varies by half
    within a day, so every section records it: compare figures of runs with similar references."""
    started = time.perf_counter()
    total = 0
    for number in range(10_000_000):
        total += number
    return round(time.perf_counter() - started, 2)


def run_section(name: str, quick: bool) -> dict[str, Any]:
    """One section's result: rows, note (why it was skipped or failed), seconds, when."""
    waited = wait_for_quiet()
    load = round(os.getloadavg()[0], 1)  # other work on the machine skews every number
    reference = cpu_reference()
    started = time.monotonic()
    note = None
    rows: list[dict[str, Any]] = []
    try:
        rows = RUNNERS[name](quick)
    except Skipped as exc:
        note = str(exc)
    except Exception as exc:  # one broken section must not lose the others' results
        where = traceback.extract_tb(exc.__traceback__)[-1]
        note = f"failed: {type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})"
    return {
        "rows": rows,
        "note": note,
        "seconds": round(time.monotonic() - started, 1),
        "ran_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_before": load,
        "cpu_reference_s": reference,
        "waited_for_quiet_s": waited,
        "quick": quick,
    }


def summary(sections: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (tool, case) of the import sections, with the ratio to wahaflow's wall time."""
    rows = [r for name in ("e2e", "peers") for r in sections.get(name, {}).get("rows", [])]
    ours = {r["case"]: r.get("wall s") for r in rows if r["tool"] == "wahaflow"}
    out = []
    for r in rows:
        base, wall = ours.get(r["case"]), r.get("wall s")
        numbers = isinstance(wall, int | float) and isinstance(base, int | float)
        ratio = round(wall / base, 2) if numbers and base else None
        out.append({c: r.get(c) for c in SUMMARY_COLUMNS[:-1]} | {"x wahaflow": ratio})
    order = {"seed 0 ms": 0, "seed 300 ms": 1, "big 0 ms": 2, "huge 0 ms": 3}
    return sorted(out, key=lambda r: order.get(r["case"], 9))


def render(results: dict[str, Any]) -> str:
    """The results as markdown: one table per section, then the summary."""
    machine = results["machine"]
    parts = [
        f"# wahaflow benchmarks{' (quick)' if results['quick'] else ''}",
        f"{machine['cpus']} CPUs, Python {machine['python']}, {machine['platform']}; "
        f"Postgres: {machine['postgres']}; written {results['written_at']}.",
    ]
    for name in SECTIONS:
        section = results["sections"].get(name)
        if section is None:
            continue
        when = (
            f"{section['seconds']} s, {section['ran_at']}, load average {section.get('load_before')} before"
        )
        if (section.get("waited_for_quiet_s") or 0) > 1.5:  # one 1 s look is always taken
            when += f" (after {section['waited_for_quiet_s']} s waiting for a quiet machine)"
        if section.get("cpu_reference_s") is not None:
            when += f", CPU reference {section['cpu_reference_s']} s (a fixed Python loop; lower is faster)"
        parts.append(f"## {name}\n\n_{when}_")
        if section["note"]:
            parts.append(section["note"])
        if section["rows"]:
            parts.append(markdown_table(section["rows"]))
    parts.append(
        "## summary\n\n`x wahaflow`: wall time relative to `wahaflow sync` on the same case. `wall s`: the"
        " median of 3 runs when a run takes under 30 s (`wall range s`: the fastest and slowest), else one."
    )
    parts.append(markdown_table(results["summary"], SUMMARY_COLUMNS))
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Run wahaflow's benchmark sections."
    )
    parser.add_argument(
        "--only",
        nargs="+",
        action="extend",
        choices=SECTIONS,
        metavar="NAME",
        help=f"sections to run (default all: {', '.join(SECTIONS)})",
    )
    parser.add_argument("--quick", action="store_true", help="seed-sized cases only (smoke test)")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress lines show at once
    names = [n for n in SECTIONS if n in (args.only or SECTIONS)]
    stem = "results-quick" if args.quick else "results"
    json_path = HERE / f"{stem}.json"
    previous = json.loads(json_path.read_text()) if json_path.exists() else {}
    sections: dict[str, Any] = previous.get("sections", {})
    for name in names:
        print(f"\n## {name}\n", flush=True)
        sections[name] = section = run_section(name, args.quick)
        if section["note"]:
            print(section["note"])
        if section["rows"]:
            print(markdown_table(section["rows"]))
        print(f"\n_{section['seconds']} s_", flush=True)
    postgres = (
        "WAHAFLOW_BENCH_DATABASE_URL"
        if os.environ.get("WAHAFLOW_BENCH_DATABASE_URL")
        else ("embedded (.wahaflow/bench-pgdata)")
    )
    results = {
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
            "postgres": postgres,
        },
        "sections": sections,
    }
    results["summary"] = summary(sections)
    print("\n## summary\n")
    print(markdown_table(results["summary"], SUMMARY_COLUMNS))
    json_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    (HERE / f"{stem}.md").write_text(render(results))
    print(f"\nwrote {json_path} and {stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
