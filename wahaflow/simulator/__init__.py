"""WAHA simulator: a deterministic synthetic account with ground truth, served over real HTTP.

- `AccountSpec` / `Account` (account.py): generate an account from a seed (`AccountSpec.preset`
  for `seed`/`big`/`huge`), mutate it (`add_messages`, `add_chat`, `edit_message`,
  `revoke_message`, `set_ack`), read its ground truth (`ground_truth_messages/chats/contacts`).
- `create_app` (app.py): the Starlette app serving WAHA's 2026 API per engine (shapes.py).
- `ServerConfig`, `Stats` (config.py): run-time knobs (auth, latency, faults, arrivals, session
  status) and request counters.
- `SimulatorServer` (server.py): the app on a background uvicorn thread (`url`, `account`, `config`,
  `stats`); `serve.main` is `wahaflow simulate`.
"""

from wahaflow.simulator.account import ENGINES, PRESETS, Account, AccountSpec
from wahaflow.simulator.app import create_app
from wahaflow.simulator.config import FAULT_KINDS, ServerConfig, Stats
from wahaflow.simulator.server import SimulatorServer

__all__ = [
    "ENGINES",
    "FAULT_KINDS",
    "PRESETS",
    "Account",
    "AccountSpec",
    "ServerConfig",
    "SimulatorServer",
    "Stats",
    "create_app",
]
