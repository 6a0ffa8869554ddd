"""Dagster resources: WAHA access and runtime settings, read from the environment at run time.

Secrets never live in resource config: the WAHA API key is read from the environment variable
named by `api_key_env`, so run config and the UI show only that name.
"""

from __future__ import annotations

import os

import dagster as dg

from wahaflow.settings import Settings, get_settings
from wahaflow.waha.client import WahaClient, client_from_settings


class WahaResource(dg.ConfigurableResource):
    """How to reach WAHA. Unset (zero/empty) fields fall back to the environment's settings."""

    url: str = ""
    sessions: str = ""
    api_key_env: str = "WAHA_API_KEY"
    concurrency: int = 0
    timeout_seconds: float = 0.0
    max_attempts: int = 0
    max_retry_seconds: float = -1.0

    def settings(self) -> Settings:
        return get_settings()

    def session_names(self) -> list[str]:
        raw = self.sessions or ",".join(self.settings().waha_sessions)
        return [s.strip() for s in raw.split(",") if s.strip()]

    def client(self) -> WahaClient:
        """A new client (use it as an async context manager)."""
        return client_from_settings(
            self.settings(),
            base_url=self.url or None,
            api_key=os.environ.get(self.api_key_env) or None,
            concurrency=self.concurrency or None,
            timeout=self.timeout_seconds or None,
            max_attempts=self.max_attempts or None,
            max_retry_seconds=self.max_retry_seconds if self.max_retry_seconds >= 0 else None,
        )
