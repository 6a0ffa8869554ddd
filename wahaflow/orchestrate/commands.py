"""`wahaflow sync` and `wahaflow demo` as terminal commands (exit status, summary, UI hint)."""

from __future__ import annotations

import os
import secrets
import time

from rich.console import Console

from wahaflow.orchestrate.warmup import SpoolWarmup
from wahaflow.settings import get_settings


def sync_command(*, full: bool = False) -> int:
    """Import from the configured WAHA; non-zero exit when any chunk (or the discovery) failed."""
    console = Console(stderr=True)
    settings = get_settings()
    # The account streams are read while Dagster loads (about a second): Dagster is imported after.
    with SpoolWarmup(settings, full=full) as warmup:
        from wahaflow.orchestrate.instance import open_instance
        from wahaflow.orchestrate.sync import print_report, run_sync

        instance = open_instance(settings)
        report = run_sync(settings, instance, full=full, console=console, warmup=warmup)
    print_report(report, console)
    return 0 if report.ok else 1


def demo_command() -> int:
    """Embedded Postgres + the simulator's seed account, imported through Dagster, then a summary."""
    from wahaflow.orchestrate.instance import open_instance
    from wahaflow.orchestrate.sync import print_report, run_sync
    from wahaflow.simulator.account import PRESETS, AccountSpec
    from wahaflow.simulator.config import ServerConfig
    from wahaflow.simulator.server import SimulatorServer

    console = Console(stderr=True)
    api_key = secrets.token_urlsafe(24)
    os.environ.pop("WAHAFLOW_DATABASE_URL", None)  # the demo always uses the embedded Postgres
    chats, messages = PRESETS["seed"]
    spec = AccountSpec(seed=42, n_chats=chats, n_messages=messages, engine="NOWEB", waha_session="default")
    console.print(
        f"[bold]wahaflow demo[/bold]: simulated WAHA account with {chats:,} chats, ~{messages:,} messages"
    )
    started = time.perf_counter()
    with SimulatorServer(spec, config=ServerConfig(api_key=api_key)) as simulator:
        os.environ.update(WAHA_URL=simulator.url, WAHA_API_KEY=api_key, WAHA_SESSIONS="default")
        settings = get_settings()
        console.print("Starting the embedded Postgres and the Dagster instance …")
        instance = open_instance(settings)
        report = run_sync(settings, instance, console=console)
        truth = simulator.account.ground_truth_messages().height
    print_report(report, console)
    stored = report.totals.get("messages", 0)
    verdict = "[green]matches[/green]" if stored == truth else f"[red]differs from[/red] ({truth:,})"
    console.print(
        f"Ground truth: the simulator served {truth:,} messages; the warehouse {verdict} it. "
        f"Total time {time.perf_counter() - started:.1f} s."
    )
    console.print(
        "\nOpen the Dagster UI on the same data, from the repository root:\n"
        "  .venv/bin/dagster dev\n"
        f"(or anywhere: DAGSTER_HOME={os.environ['DAGSTER_HOME']} dagster dev -w <repo>/workspace.yaml)\n"
        "then http://127.0.0.1:3000 > Assets > messages > Partitions."
    )
    return 0 if report.ok and stored == truth else 1
