"""The embedded Postgres: a real server kept under `WAHAFLOW_HOME`, started once and reused.

Used when `WAHAFLOW_DATABASE_URL` is unset. pgserver ships the Postgres binaries in its wheel; the
server keeps running after the process that started it exits, so later commands reuse it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from wahaflow.settings import Settings

log = logging.getLogger(__name__)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def embedded_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded server whose data lives in `data_dir`; return its libpq URL."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir.parent))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    data_dir = data_dir.resolve()
    with _file_lock(data_dir.parent / ".pgserver.lock"):
        server = pgserver.get_server(data_dir, cleanup_mode=None)
        return server.get_uri()


def database_url(settings: Settings) -> str:
    """The warehouse URL: `WAHAFLOW_DATABASE_URL`, else the embedded server under `WAHAFLOW_HOME`."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return embedded_url(settings.home_dir / "pgdata")
