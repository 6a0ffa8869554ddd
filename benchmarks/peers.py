"""Section `peers`: the two peer importers of `../shared/peers` on the same simulator and Postgres.

- `v1`: the old importer's algorithm (`v1_baseline.py`);
- `dlt default` / `dlt tuned`: the same import with dlt (`dlt_baseline.py --mode default|tuned`).

They run from their own virtualenv `.peers-venv` (created here on first use from
`../shared/peers/requirements.txt`), each into its own fresh schema (dropped after the check), as
child processes measured like `wahaflow sync` in section `e2e`: wall time of the process, requests
the simulator answered, peak resident memory, and the stored rows against the ground truth; a run
under 30 s is repeated and the median one reported, as for wahaflow (`common.median_run`). The
scripts are run, never copied.
"""

from __future__ import annotations

import subprocess
import tempfile
from typing import Any

from benchmarks.common import (
    REPO,
    Simulator,
    Skipped,
    case_name,
    check_warehouse,
    child_env,
    measured_fields,
    median_run,
    run_measured,
    temp_schema,
    timed_out_fields,
    truth,
)

PEERS_DIR = (REPO.parent / "shared" / "peers").resolve()
VENV = REPO / ".peers-venv"
VENV_PYTHON = VENV / "bin" / "python"
TIMEOUT_S = 600.0

CASES: list[tuple[str, float]] = [("seed", 0), ("seed", 300), ("big", 0)]
QUICK_CASES: list[tuple[str, float]] = [("seed", 0)]
TOOLS: dict[str, list[str]] = {
    "v1": ["v1_baseline.py"],
    "dlt default": ["dlt_baseline.py", "--mode", "default"],
    "dlt tuned": ["dlt_baseline.py", "--mode", "tuned"],
}
SKIP: dict[tuple[str, str, float], str] = {
    ("dlt default", "seed", 300): "not run: known to take > 700 s (one chat at a time, 2 requests per chat)",
}


def ensure_venv() -> str | None:
    """Create `.peers-venv` if needed; None when ready, else why the section cannot run."""
    if not (PEERS_DIR / "requirements.txt").is_file():
        return f"skipped: the peer scripts are not there ({PEERS_DIR})"
    probe = [str(VENV_PYTHON), "-c", "import dlt, psycopg, httpx"]
    if VENV_PYTHON.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return None
    print(f"  creating {VENV.name} (pip install -r {PEERS_DIR / 'requirements.txt'}) …", flush=True)
    steps = [
        ["python3", "-m", "venv", str(VENV)],
        [str(VENV / "bin" / "pip"), "install", "--quiet", "-r", str(PEERS_DIR / "requirements.txt")],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            return f"skipped: `{' '.join(step)}` failed: {done.stderr.strip()[-300:]}"
    return None


def run_tool(tool: str, sim: Simulator, pg_url: str) -> dict[str, Any]:
    """One peer run into a fresh schema; one result row."""
    row: dict[str, Any] = {"tool": tool, "case": case_name(sim.preset, sim.latency_ms)}
    skip = SKIP.get((tool, sim.preset, sim.latency_ms))
    if skip:
        return row | {"correct": None, "note": skip}
    expected = truth(sim.preset)
    prefix = "bench_" + tool.replace(" ", "_")
    with (
        temp_schema(pg_url, prefix, companions=["_staging"]) as schema,
        tempfile.TemporaryDirectory(prefix="dlt-bench-") as work,
    ):
        script, *args = TOOLS[tool]
        cmd = [str(VENV_PYTHON), str(PEERS_DIR / script), *args, "--schema", schema]
        if script.startswith("dlt"):
            cmd += ["--work-dir", work]
        sim.reset()
        env = child_env(**sim.env(), WAHAFLOW_DATABASE_URL=pg_url)
        measured = run_measured(cmd, env=env, timeout=TIMEOUT_S)
        requests = sim.requests()
        if measured.timed_out:
            return row | timed_out_fields(measured, requests, TIMEOUT_S)
        check = check_warehouse(pg_url, schema, expected)
    # "own s" (the peer's own timing) goes beside the wall time
    columns = row | {"wall s": None, "own s": measured.bench_json().get("wall_s")}
    return (
        columns
        | measured_fields(measured, requests, check, expected, check["messages"])
        | {
            "correct": check["correct"] and measured.ok,
            "note": check["check"] if measured.ok else measured.error(),
        }
    )


def run(pg_url: str, quick: bool = False) -> list[dict[str, Any]]:
    """Every (case, tool); raises `Skipped` when the peers or their virtualenv are not available."""
    problem = ensure_venv()
    if problem:
        raise Skipped(problem)
    rows: list[dict[str, Any]] = []
    cases = QUICK_CASES if quick else CASES
    for preset in dict.fromkeys(p for p, _ in cases):
        with Simulator(preset) as sim:
            for latency in (lat for p, lat in cases if p == preset):
                sim.set_latency(latency)
                for tool in TOOLS:
                    rows.append(median_run(lambda tool=tool: run_tool(tool, sim, pg_url)))
                    r = rows[-1]
                    print(
                        f"  peers {r['case']} {tool}: {r.get('wall s', '-')} s, correct {r.get('correct')}",
                        flush=True,
                    )
    return rows
