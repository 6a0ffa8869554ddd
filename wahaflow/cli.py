"""The `wahaflow` console script: thin commands that call into the packages."""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence

from wahaflow.runtime import limit_heap_fragmentation


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wahaflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="embedded Postgres + simulator, full import through Dagster")
    sync = sub.add_parser("sync", help="import from the configured WAHA through Dagster")
    sync.add_argument("--full", action="store_true", help="re-fetch everything")
    simulate = sub.add_parser("simulate", help="serve a WAHA-compatible API with a synthetic account")
    simulate.add_argument("--preset", choices=["seed", "big", "huge"], default=None)
    simulate.add_argument("--chats", type=int, default=None)
    simulate.add_argument("--messages", type=int, default=None)
    simulate.add_argument("--seed", type=int, default=None)
    simulate.add_argument("--engine", choices=["WEBJS", "NOWEB", "GOWS"], default=None)
    simulate.add_argument("--latency-ms", type=float, default=0.0)
    simulate.add_argument("--fault-rate", type=float, default=0.0)
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=3000)
    simulate.add_argument("--api-key", default=None)
    simulate.add_argument(
        "--webhook-url",
        default=None,
        help="POST WAHA webhook events for changes made after start (HMAC key: WAHAFLOW_WEBHOOK_HMAC_KEY)",
    )
    webhook = sub.add_parser("webhook", help="serve the webhook receiver (POST /webhooks/waha)")
    webhook.add_argument("--host", default=None)
    webhook.add_argument("--port", type=int, default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    limit_heap_fragmentation()
    try:
        return _run(args)
    finally:
        # The process ends here: spare the interpreter's shutdown the garbage collector's passes
        # over every object Dagster loaded (about 0.5 s per command; memory goes back to the OS).
        gc.freeze()


def _run(args: argparse.Namespace) -> int:
    if args.command == "simulate":
        from wahaflow.simulator.serve import main as simulate_main

        return simulate_main(args)
    if args.command == "sync":
        from wahaflow.orchestrate.commands import sync_command

        return sync_command(full=args.full)
    if args.command == "demo":
        from wahaflow.orchestrate.commands import demo_command

        return demo_command()
    from wahaflow.webhook.serve import main as webhook_main

    return webhook_main(args)


if __name__ == "__main__":
    sys.exit(main())
