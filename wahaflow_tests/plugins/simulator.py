"""WAHA simulator fixtures: real HTTP servers on 127.0.0.1 with deterministic synthetic accounts.

`simulator_factory` (function-scoped) starts servers and stops them all at teardown:

    def test_x(simulator_factory):
        sim = simulator_factory(chats=30, messages=200, seed=7, engine="WEBJS", api_key="k",
                                latency_ms=0, fault_rate=0.0, **config)
        sim.url, sim.account, sim.config, sim.stats   # SimulatorServer attributes
        sim.account.ground_truth_messages()           # what a correct import must contain

Signature: `simulator_factory(*, chats=60, messages=400, seed=42, engine="NOWEB", api_key=None,
latency_ms=0.0, fault_rate=0.0, preset=None, sessions=("default",), **config)`. `preset`
("seed"/"big"/"huge") replaces `chats`/`messages`; each name in `sessions` gets its own account
(seed + its position); any other keyword is a `ServerConfig` field (e.g. `fault_kinds=("429",)`,
`fault_seed=3`, `arrivals_per_request=0.5`, `session_status="STARTING"`).

`simulator` is a ready NOWEB server with 60 chats / 400 messages, seed 42, api key "test-key".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from wahaflow.simulator.account import PRESETS, AccountSpec
from wahaflow.simulator.config import ServerConfig
from wahaflow.simulator.server import SimulatorServer

SIMULATOR_API_KEY = "test-key"

SimulatorFactory = Callable[..., SimulatorServer]


@pytest.fixture
def simulator_factory() -> Iterator[SimulatorFactory]:
    """Start simulator servers on demand; all are stopped when the test ends."""
    started: list[SimulatorServer] = []

    def make(
        *,
        chats: int = 60,
        messages: int = 400,
        seed: int = 42,
        engine: str = "NOWEB",
        api_key: str | None = None,
        latency_ms: float = 0.0,
        fault_rate: float = 0.0,
        preset: str | None = None,
        sessions: Sequence[str] = ("default",),
        **config: Any,
    ) -> SimulatorServer:
        if preset is not None:
            chats, messages = PRESETS[preset]
        specs = [
            AccountSpec(seed=seed + i, n_chats=chats, n_messages=messages, engine=engine, waha_session=name)  # type: ignore[arg-type]
            for i, name in enumerate(sessions)
        ]
        cfg = ServerConfig(api_key=api_key, latency_ms=latency_ms, fault_rate=fault_rate, **config)
        server = SimulatorServer(specs, config=cfg).start()
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def simulator(simulator_factory: SimulatorFactory) -> SimulatorServer:
    """A small NOWEB account (60 chats, 400 messages, seed 42) behind api key `test-key`."""
    return simulator_factory(chats=60, messages=400, seed=42, engine="NOWEB", api_key=SIMULATOR_API_KEY)
