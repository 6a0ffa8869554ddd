"""The `wahaflow` console script, run as a user would: a separate process, settings from the environment."""

from __future__ import annotations

import os
import subprocess
import sys

API_KEY = "cli-key"


def run_cli(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wahaflow.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_sync_reports_failed_chunks_with_non_zero_exit_then_succeeds(
    simulator_factory, pg_url, pg_schema, tmp_path
):
    simulator = simulator_factory(chats=30, messages=200, api_key=API_KEY)
    env = {
        "WAHA_URL": simulator.url,
        "WAHA_API_KEY": API_KEY,
        "WAHAFLOW_DATABASE_URL": pg_url,
        "WAHAFLOW_SCHEMA": pg_schema,
        "WAHAFLOW_HOME": str(tmp_path / "home"),
        "WAHAFLOW_CHUNK_SIZE": "10",
        "WAHAFLOW_WAHA_MAX_ATTEMPTS": "2",
        "WAHAFLOW_WAHA_RETRY_SECONDS": "2",
        "WAHAFLOW_STEP_RETRIES": "0",
    }
    env.pop("DAGSTER_HOME", None)
    simulator.config.fault_routes = ("messages",)
    simulator.config.fault_kinds = ("500",)
    simulator.config.fault_rate = 1.0
    failed = run_cli(["sync"], env)
    assert failed.returncode == 1, failed.stderr
    assert "Failed chunks" in failed.stderr and "default-00000" in failed.stderr
    assert API_KEY not in failed.stdout + failed.stderr

    simulator.config.fault_rate = 0.0
    ok = run_cli(["sync"], env)
    assert ok.returncode == 0, ok.stderr
    assert "200 messages" in ok.stderr and "duplicates: 0" in ok.stderr
    # The runs are recorded in the Dagster instance kept under WAHAFLOW_HOME.
    assert (tmp_path / "home" / "dagster" / "dagster.yaml").exists()


def test_bad_api_key_fails_fast_with_one_clear_message(simulator_factory, pg_url, pg_schema, tmp_path):
    simulator = simulator_factory(chats=5, messages=20, api_key=API_KEY)
    env = {
        "WAHA_URL": simulator.url,
        "WAHA_API_KEY": "wrong-key-123",
        "WAHAFLOW_DATABASE_URL": pg_url,
        "WAHAFLOW_SCHEMA": pg_schema,
        "WAHAFLOW_HOME": str(tmp_path / "home"),
    }
    result = run_cli(["sync"], env)
    assert result.returncode == 1
    assert "API key" in result.stderr
    assert "wrong-key-123" not in result.stdout + result.stderr
    assert simulator.stats.by_status.get(401, 0) <= 4  # no retry storm (step retries included)
