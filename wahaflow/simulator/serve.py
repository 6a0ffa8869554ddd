"""`wahaflow simulate`: serve the simulator in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import threading
import time

from wahaflow.simulator.account import PRESETS, AccountSpec
from wahaflow.simulator.config import ServerConfig
from wahaflow.simulator.server import SimulatorServer


def spec_from_args(args: argparse.Namespace) -> AccountSpec:
    """The account spec of the CLI arguments: preset `seed`, NOWEB and seed 42 unless overridden."""
    n_chats, n_messages = PRESETS[args.preset or "seed"]
    return AccountSpec(
        seed=42 if args.seed is None else args.seed,
        n_chats=args.chats or n_chats,
        n_messages=args.messages or n_messages,
        engine=args.engine or "NOWEB",
    )


def main(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    """Generate the account, serve it, print where; return 0 after Ctrl-C (or when `stop` is set)."""
    started = time.perf_counter()
    try:
        spec = spec_from_args(args)
        config = ServerConfig(
            api_key=args.api_key,
            latency_ms=args.latency_ms,
            fault_rate=args.fault_rate,
            webhook_url=getattr(args, "webhook_url", None),
            webhook_hmac_key=os.environ.get("WAHAFLOW_WEBHOOK_HMAC_KEY") or None,
        )
    except ValueError as exc:
        print(f"wahaflow simulate: {exc}")
        return 2
    server = SimulatorServer(spec, config=config, host=args.host, port=args.port)
    account = server.account
    generated = time.perf_counter() - started
    try:
        server.start()
    except OSError as exc:
        print(f"wahaflow simulate: cannot listen on {args.host}:{args.port}: {exc}")
        return 1
    print(f"WAHA simulator ({spec.engine}, seed {spec.seed}) serving {server.url}", flush=True)
    print(
        f"  session '{account.waha_session}': {account.n_chats:,} chats, {account.n_messages:,} messages, "
        f"{len(account.contacts()):,} contacts (generated in {generated:.2f} s)",
        flush=True,
    )
    if config.api_key:
        print("  requests need the header X-Api-Key", flush=True)
    if config.webhook_url:
        signed = "signed with WAHAFLOW_WEBHOOK_HMAC_KEY" if config.webhook_hmac_key else "unsigned"
        print(
            f"  new messages, edits, revokes and acks are POSTed to {config.webhook_url} ({signed})",
            flush=True,
        )
    print("  Ctrl-C to stop", flush=True)
    try:
        while not (stop is not None and stop.is_set()):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
