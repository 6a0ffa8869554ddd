"""Reading ahead: each session's history goes into the sync's spool while Dagster starts.

`wahaflow sync` spends its first seconds importing Dagster, opening its instance and listing the
chats, and only then do its chunk runs fetch messages. The warm-up fetches meanwhile, in a thread of
its own, into the spool every run of the sync shares (`wahaflow.waha.spool`):

- on engines with an account-wide stream (NOWEB, GOWS), the session's stream, which the chunk runs
  of a first import (or of `--full`) would read anyway;
- on other engines (WEBJS), the whole history of every chat of a session that has none stored yet.

It lists every session's chats and contacts first, for the discovery of the sync to take
(`wahaflow.waha.listings`), and on WEBJS reads the chats of that listing.

So the requests overlap Dagster's start instead of following it (so does asking each session's own
id, which the chunk runs need and `WahaClient.own_id` keeps), and `sync` knows every chunk's
messages before its first run, and sizes that run too.

It decides per session as the chunk runs would (`importer.stream_pays_off` over the registry), and
always reads ahead for a session that was never listed. It writes nothing to Postgres (it only runs
the warehouse migrations, as any command does first). It is only ahead of time: when it is refused
or fails, there is no spool (or one without the failed chats), and the chunk runs fetch what it
lacks. This module does not import Dagster, so that the warm-up starts first.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from types import TracebackType

import psycopg

from wahaflow.importer import DISCOVERY_ANSWER_AGE, server_engine, stream_pays_off
from wahaflow.settings import Settings
from wahaflow.waha.client import WahaClient, client_from_settings
from wahaflow.waha.fetch import STREAM_ENGINES, spool_account_stream
from wahaflow.waha.listings import Listing, drop_listings, list_ahead
from wahaflow.waha.paging import default_until
from wahaflow.waha.spool import Spool, SpoolProgress, chats_to_spool, group_directory, spool_lock
from wahaflow.warehouse import reads
from wahaflow.warehouse.embedded import database_url


@dataclass(frozen=True)
class WarmupResult:
    """What the warm-up did."""

    spooled: tuple[str, ...] = ()  # the sessions with a spool (their stream, or their chats' histories)
    requests: int = 0
    error: str | None = None  # why it stopped early (the chunk runs fetch without it)


class SpoolWarmup:
    """The warm-up of one sync, as a context manager: started on entry; on exit stopped, and the
    sync's spool removed. `result()` waits for it (the sync asks once the chats are listed)."""

    def __init__(self, settings: Settings, *, full: bool = False) -> None:
        self.settings = settings
        self.full = full
        self.sync_id = uuid.uuid4().hex
        self.group = group_directory(settings.home_dir, settings.db_schema, self.sync_id)
        """The spool group of the sync: one spool per WAHA session under it."""
        self.progress = SpoolProgress()
        """What it has read so far (for a progress display)."""
        self._result = WarmupResult()
        self._server: str | None = None
        self._stopping = threading.Event()
        self._task: tuple[asyncio.AbstractEventLoop, asyncio.Task[WarmupResult]] | None = None
        self._thread = threading.Thread(target=self._run, name="wahaflow-warmup", daemon=True)

    def __enter__(self) -> SpoolWarmup:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if self._server is not None:
            drop_listings(self._server)  # those the discovery did not take
        shutil.rmtree(self.group, ignore_errors=True)

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the warm-up to end; whether it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def result(self) -> WarmupResult:
        """Wait until the warm-up is done, and say what it did."""
        self._thread.join()
        return self._result

    def stop(self) -> None:
        """Cancel the warm-up if it still runs (a partly written spool is removed) and wait for it."""
        self._stopping.set()
        if self._task is not None:
            loop, task = self._task
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                loop.call_soon_threadsafe(task.cancel)
        if self._thread.ident is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            self._result = asyncio.run(self._main())
        except asyncio.CancelledError:
            self._result = WarmupResult(error="stopped")
        except Exception as error:  # ahead of time only: the chunk runs fetch without it
            self._result = WarmupResult(error=f"{type(error).__name__}: {error}")

    async def _main(self) -> WarmupResult:
        task = asyncio.current_task()
        assert task is not None
        self._task = (asyncio.get_running_loop(), task)
        if self._stopping.is_set():
            return WarmupResult(error="stopped")
        return await self._warm()

    async def _warm(self) -> WarmupResult:
        async with client_from_settings(self.settings) as client:
            self._server = client.base_url
            # Every session's listing, for the discovery (`take_listing`), the engine (kept for
            # this process: the discovery and the chunk runs reuse the answer), and what the
            # registry says of each session, all at once.
            listings = {s: list_ahead(client, s) for s in self.settings.waha_sessions}
            # the warehouse migrations, as any command runs them first (the decision below does
            # not wait for them: without a registry, nothing was ever listed)
            migrated = asyncio.ensure_future(asyncio.to_thread(self._migrate))
            engine, needs = await asyncio.gather(
                server_engine(client, max_age=DISCOVERY_ANSWER_AGE),
                asyncio.to_thread(self._whole_history_needs),
            )
            if engine is None:
                await asyncio.gather(migrated, *listings.values(), return_exceptions=True)
                return WarmupResult(requests=client.stats.requests)
            until = default_until()
            sessions = [s for s in self.settings.waha_sessions if self._reads_ahead(s, needs, engine)]
            outcomes, *_ = await asyncio.gather(
                asyncio.gather(
                    *(self._read_ahead(client, s, engine, until, listings[s]) for s in sessions),
                    return_exceptions=True,
                ),
                # kept for the chunk runs (which ask again if this fails)
                asyncio.gather(*(client.own_id(s) for s in sessions), return_exceptions=True),
                # the discovery's (which lists again if one fails)
                asyncio.gather(*listings.values(), return_exceptions=True),
                # (a failed migration fails again, and is reported, in the sync's first run)
                asyncio.gather(migrated, return_exceptions=True),
            )
        by_session = dict(zip(sessions, outcomes, strict=True))
        errors = [
            f"{s}: {type(o).__name__}: {o}" for s, o in by_session.items() if isinstance(o, BaseException)
        ]
        return WarmupResult(
            spooled=tuple(s for s, outcome in by_session.items() if isinstance(outcome, Spool)),
            requests=client.stats.requests,
            error="; ".join(errors) or None,
        )

    def _migrate(self) -> None:
        # Imported here, in a worker thread, while the first requests are in flight: the warehouse
        # tables (SQLAlchemy) are not needed to start them.
        from wahaflow.warehouse.migrations import ensure_migrated

        ensure_migrated(database_url(self.settings), self.settings.db_schema)

    def _whole_history_needs(self) -> dict[str, tuple[int, int]]:
        """Per registered session: (chats whose whole history is still to fetch, chats)."""
        with psycopg.connect(database_url(self.settings)) as conn:
            return reads.whole_history_needs(conn, self.settings.db_schema, full=self.full)

    def _reads_ahead(self, session: str, needs: dict[str, tuple[int, int]], engine: str) -> bool:
        """Whether the chunk runs of this sync would read `session`'s whole stream (NOWEB, GOWS), or
        fetch the whole history of every chat of it (other engines)."""
        if session not in needs:  # never listed: all of it
            return True
        needed, chats = needs[session]
        if engine in STREAM_ENGINES:
            return stream_pays_off(needed, chats, self.settings.stream_min_chats)
        return needed == chats

    async def _read_ahead(
        self, client: WahaClient, session: str, engine: str, until: int, listing: Awaitable[Listing]
    ) -> Spool | None:
        """The session's spool: its account stream, or else every listed chat's whole history."""
        directory = self.group / session
        if engine in STREAM_ENGINES:
            spool, _ = await spool_account_stream(
                client, session, directory, until=until, progress=self.progress
            )
            return spool
        chats = (await listing).chats
        async with spool_lock(directory):
            return await chats_to_spool(
                client, session, directory, chats, until=until, progress=self.progress
            )
