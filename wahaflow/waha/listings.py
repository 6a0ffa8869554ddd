"""A session's chat list and address book, and their hand-over from a sync's warm-up to its discovery.

`wahaflow sync` lists every session while Dagster starts (`list_ahead`, in the warm-up's thread);
the discovery of the same process then takes that listing (`take_listing`) instead of asking WAHA
again: a round trip and two listings fewer on the sync's critical path. A listing is taken once, and
only while younger than the age the taker accepts; a listing that failed, was dropped, or is too old
is asked for again, except one WAHA refused for good (a bad key, an unknown session): the taker
gets that refusal. Nothing else is kept: a discovery without a warm-up (from the UI, a sensor)
always asks WAHA.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from dataclasses import dataclass

import polars as pl

from wahaflow.waha.client import WahaClient
from wahaflow.waha.errors import WahaAuthError, WahaNotFound, WahaRequestError
from wahaflow.waha.fetch import fetch_chats, fetch_contacts


@dataclass(frozen=True)
class Listing:
    """One session's chat list and address book, normalized (CHATS, CONTACTS and REJECTS frames)."""

    chats: pl.DataFrame
    contacts: pl.DataFrame
    rejects: pl.DataFrame


PERMANENT_ERRORS = (WahaAuthError, WahaNotFound, WahaRequestError)
"""Refusals that asking again cannot change (a bad key, an unknown session, a bad request)."""


class ListingUnavailable(Exception):
    """The listing read ahead did not complete (it failed, or the warm-up was stopped)."""


async def list_session(client: WahaClient, session: str) -> Listing:
    """The session's chats and contacts, both asked at once."""
    (chats, chat_rejects, _), (contacts, contact_rejects) = await asyncio.gather(
        fetch_chats(client, session), fetch_contacts(client, session)
    )
    return Listing(
        chats=chats,
        contacts=contacts,
        rejects=pl.concat([chat_rejects, contact_rejects], how="diagonal_relaxed"),
    )


_Key = tuple[str, str]  # (server URL, session)
_ahead: dict[_Key, tuple[float, concurrent.futures.Future[Listing]]] = {}
_lock = threading.Lock()


def list_ahead(client: WahaClient, session: str) -> asyncio.Task[Listing]:
    """Start listing `session` (in the running loop) for the next `take_listing` of this process,
    whatever thread or loop it runs in; the task's result is the listing."""
    handed: concurrent.futures.Future[Listing] = concurrent.futures.Future()
    with _lock:
        _ahead[(client.base_url, session)] = (time.monotonic(), handed)
    task = asyncio.ensure_future(list_session(client, session))

    def settle(done: asyncio.Task[Listing]) -> None:
        if done.cancelled():
            handed.set_exception(ListingUnavailable("the read-ahead was stopped"))
        elif isinstance(error := done.exception(), PERMANENT_ERRORS):
            handed.set_exception(error)  # asking again would only be refused again
        elif error is not None:
            handed.set_exception(ListingUnavailable(f"{type(error).__name__}: {error}"))
        else:
            handed.set_result(done.result())

    task.add_done_callback(settle)
    return task


async def take_listing(client: WahaClient, session: str, *, max_age: float) -> Listing:
    """The listing read ahead for `session` on `client`'s server if one was started less than
    `max_age` seconds ago (waiting for it if it is still under way; asking WAHA again if it failed,
    unless WAHA refused it for good: then with the same error); else a listing asked for now."""
    with _lock:
        entry = _ahead.pop((client.base_url, session), None)
    if entry is not None and time.monotonic() - entry[0] < max_age:
        try:
            return await asyncio.wrap_future(entry[1])
        except ListingUnavailable:
            pass
    return await list_session(client, session)


def drop_listings(base_url: str | None = None) -> None:
    """Forget the listings read ahead and not taken (those of one server, or all)."""
    with _lock:
        for key in [k for k in _ahead if base_url is None or k[0] == base_url]:
            del _ahead[key]
