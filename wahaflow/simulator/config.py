"""Run-time knobs of the simulator (`ServerConfig`) and its request counters (`Stats`).

Both are plain mutable objects shared with the server thread: tests change a knob between requests
(`server.config.fault_rate = 0.2`) and read or reset the counters (`server.stats.reset()`).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = ("500", "429", "422", "slow", "truncated", "disconnect")
"""Every fault the simulator can inject on a data request:

- `500`: WAHA's 500 body (an engine error such as a gRPC timeout);
- `429`: `{"statusCode":429,...}` with a `Retry-After: 1` header (a proxy in front of WAHA);
- `422`: the session-not-working body (top-level object `{error, session, status, expected}`);
- `slow`: waits `slow_seconds` before answering normally (client timeouts);
- `truncated`: status 200 with the first half of the real JSON body (valid Content-Length);
- `disconnect`: closes the connection without any response.
"""

DEFAULT_FAULT_KINDS = ("500", "429", "422", "truncated", "disconnect")
"""Kinds drawn when `fault_kinds` is not set: all but `slow`, which costs seconds per hit."""

SESSION_STATUSES = (
    "STOPPED",
    "STARTING",
    "SCAN_QR_CODE",
    "PASSKEY_REQUIRED",
    "PASSKEY_CONFIRMATION_REQUIRED",
    "WORKING",
    "FAILED",
)


@dataclass
class ServerConfig:
    """Mutable simulator settings; change any field at run time.

    - `api_key`: when set, every request needs `X-Api-Key` (or `?x-api-key=`), else 401.
    - `latency_ms`: added to every request (`asyncio.sleep`).
    - `fault_rate` (0..1): probability that a data request (chats, overview, messages, contacts,
      lids) fails with one of `fault_kinds`, drawn from an RNG seeded with `fault_seed`.
    - `fault_routes`: when not empty, only these route names can fault (e.g. `("messages",)`).
    - `slow_seconds`: how long a `slow` fault waits.
    - `arrivals_per_request`: new messages created in the requested chat (a random chat for
      `chatId=all`) on each messages request before it is answered; a fraction is a probability
      (0.3 = one message 30% of the time, 2.5 = two or three).
    - `session_status`: the WAHA session status; `STOPPED` answers data requests with 404, any other
      non-`WORKING` status with 422 after waiting up to `status_wait_seconds` for `WORKING`.
    - `webjs_batch`, `webjs_initial_loaded`: WEBJS history loading (messages per
      `loadEarlierMsgs` batch, messages already loaded in the browser per chat).
    - `webjs_empty_batch_error`: reproduce WAHA's WEBJS crash when no loaded message passes the
      filters (`earliest` is undefined -> 500); off by default.
    - `auth_exclude`: paths served without a key (WAHA's `WAHA_API_KEY_EXCLUDE_PATH`).
    - `webhook_url`: when set at `SimulatorServer.start()`, every later mutation of the accounts is
      POSTed there as a WAHA event (simulator/webhooks.py); `webhook_hmac_key` signs the bodies
      (`X-Webhook-Hmac`); `webhook_redelivery_rate` (0..1) posts an event twice with the same body.
    """

    api_key: str | None = None
    latency_ms: float = 0.0
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = DEFAULT_FAULT_KINDS
    fault_seed: int = 0
    fault_routes: tuple[str, ...] = ()
    slow_seconds: float = 5.0
    arrivals_per_request: float = 0.0
    session_status: str = "WORKING"
    status_wait_seconds: float = 0.0
    webjs_batch: int = 50
    webjs_initial_loaded: int = 1
    webjs_empty_batch_error: bool = False
    auth_exclude: frozenset[str] = frozenset()
    webhook_url: str | None = None
    webhook_hmac_key: str | None = field(default=None, repr=False)
    webhook_redelivery_rate: float = 0.0
    _seeded: int | None = field(default=None, init=False, repr=False)
    _fault_rng: random.Random = field(default_factory=random.Random, init=False, repr=False)
    _arrival_rng: random.Random = field(default_factory=random.Random, init=False, repr=False)

    def __post_init__(self) -> None:
        self.fault_kinds = tuple(self.fault_kinds)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError on an invalid knob."""
        unknown = set(self.fault_kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be within 0..1")
        if not 0.0 <= self.webhook_redelivery_rate <= 1.0:
            raise ValueError("webhook_redelivery_rate must be within 0..1")
        if self.session_status not in SESSION_STATUSES:
            raise ValueError(f"session_status must be one of {SESSION_STATUSES}")

    def _rngs(self) -> tuple[random.Random, random.Random]:
        if self._seeded != self.fault_seed:
            self._fault_rng = random.Random(self.fault_seed)
            self._arrival_rng = random.Random(self.fault_seed + 1)
            self._seeded = self.fault_seed
        return self._fault_rng, self._arrival_rng

    def reseed(self) -> None:
        """Restart the fault and arrival RNGs from `fault_seed` (same requests -> same faults)."""
        self._seeded = None

    def draw_fault(self, route: str | None = None) -> str | None:
        """The fault to inject into the next data request (of `route`), if any."""
        if self.fault_rate <= 0 or not self.fault_kinds:
            return None
        if self.fault_routes and route not in self.fault_routes:
            return None
        rng = self._rngs()[0]
        if rng.random() >= self.fault_rate:
            return None
        return self.fault_kinds[rng.randrange(len(self.fault_kinds))]

    def draw_arrivals(self) -> int:
        """How many messages arrive with the next messages request."""
        rate = self.arrivals_per_request
        if rate <= 0:
            return 0
        whole = int(rate)
        return whole + (1 if self._rngs()[1].random() < rate - whole else 0)

    def arrival_seed(self) -> int:
        """A seed for choosing where arrivals go (from the arrival RNG)."""
        return self._rngs()[1].randrange(2**31)


@dataclass
class Stats:
    """Request counters: totals, per route name, per status code, faults injected, arrivals."""

    total: int = 0
    by_route: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    arrivals: int = 0

    def reset(self) -> None:
        """Zero every counter."""
        self.total = 0
        self.by_route.clear()
        self.by_status.clear()
        self.faults.clear()
        self.arrivals = 0

    def snapshot(self) -> dict[str, Any]:
        """A copy of the counters as plain data."""
        return {
            "total": self.total,
            "by_route": dict(self.by_route),
            "by_status": dict(self.by_status),
            "faults": dict(self.faults),
            "arrivals": self.arrivals,
        }
