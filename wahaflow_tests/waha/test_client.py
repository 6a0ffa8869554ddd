"""The HTTP core against a real server: retries, typed errors, the API key, pooling, lists."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from wahaflow.waha.client import _THREAD_PARSE_BYTES, WahaClient
from wahaflow.waha.errors import (
    WahaAuthError,
    WahaNotFound,
    WahaRequestError,
    WahaSessionNotFound,
    WahaUnavailable,
)
from wahaflow_tests.waha.fakewaha import (
    ENGINE_500,
    ME,
    NOT_IMPLEMENTED_422,
    NOT_WORKING_422,
    FakeWaha,
    Fault,
    message,
)

CHAT = "14155550101@c.us"
KEY = "sk-very-secret-4f9c2d"
NOW = 1_760_000_000


def make_client(fake: FakeWaha, **kwargs: Any) -> WahaClient:
    options: dict[str, Any] = {
        "page_size": 50,
        "list_page_size": 50,
        "timeout": 2.0,
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
        "max_retry_seconds": 10.0,
    }
    return WahaClient(fake.url, kwargs.pop("api_key", None), **{**options, **kwargs})  # type: ignore[attr-defined]


def run(fake: FakeWaha, job: Callable[[WahaClient], Awaitable[Any]], **kwargs: Any) -> tuple[Any, WahaClient]:
    async def main() -> tuple[Any, WahaClient]:
        async with make_client(fake, **kwargs) as client:
            return await job(client), client

    return asyncio.run(main())


def one_chat(fake: FakeWaha, n: int = 5) -> set[str]:
    fake.chats[CHAT] = [message(CHAT, f"K{i}", float(NOW - i)) for i in range(n)]
    return {m["id"] for m in fake.chats[CHAT]}


def messages_job(client: WahaClient) -> Awaitable[Any]:
    return client.chat_messages("default", CHAT, until=NOW)


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", 500, ENGINE_500),
        Fault("status", 502, None),
        Fault("status", 503, {"message": "unavailable"}),
        Fault("status", 422, NOT_WORKING_422),
        Fault("truncate"),
        Fault("not_array"),
        Fault("drop"),
        Fault("close"),
        Fault("status", 429, {"message": "slow down"}, headers={"Retry-After": "0"}),
    ],
    ids=lambda f: f"{f.kind}-{f.status}" if f.kind == "status" else f.kind,
)
def test_transient_failures_are_retried(
    fake: FakeWaha, fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    ids = one_chat(fake)
    fake.faults = [fault, Fault(fault.kind, fault.status, fault.body, fault.headers)]
    with caplog.at_level(logging.WARNING, logger="wahaflow"):
        result, client = run(fake, messages_job)
    assert set(result.raw["id"]) == ids
    assert client.stats.requests == 3 and client.stats.retries == 2
    assert result.requests == 3 and result.retries == 2 and result.pages == 1
    assert len([r for r in caplog.records if "retry" in r.getMessage()]) == 2


def test_retry_after_is_honoured(fake: FakeWaha) -> None:
    one_chat(fake)
    fake.faults = [Fault("status", 429, {"message": "Too Many Requests"}, headers={"Retry-After": "1"})]
    started = time.monotonic()
    run(fake, messages_job)
    assert time.monotonic() - started >= 0.95
    assert len(fake.seen) == 2


def test_retry_after_beyond_the_budget_gives_up_at_once(fake: FakeWaha) -> None:
    one_chat(fake)
    fake.faults = [Fault("status", 503, {}, headers={"Retry-After": "3600"})]
    started = time.monotonic()
    with pytest.raises(WahaUnavailable) as info:
        run(fake, messages_job, max_retry_seconds=5)
    assert time.monotonic() - started < 2
    assert info.value.attempts == 1 and info.value.status == 503
    assert "3600" in str(info.value)


def test_slow_response_beyond_the_timeout_is_retried(fake: FakeWaha) -> None:
    ids = one_chat(fake)
    fake.faults = [Fault("slow", delay=1.5)]
    result, client = run(fake, messages_job, timeout=0.4)
    assert set(result.raw["id"]) == ids
    assert client.stats.retries == 1


def test_budget_exhausted_says_what_how_often_and_last_status(fake: FakeWaha) -> None:
    one_chat(fake)
    fake.faults = [Fault("status", 503, {"message": "engine restarting"}) for _ in range(10)]
    with pytest.raises(WahaUnavailable) as info:
        run(fake, messages_job, max_attempts=4)
    error = info.value
    assert error.attempts == 4 and error.status == 503 and len(fake.seen) == 4
    text = str(error)
    assert "GET /api/default/chats/14155550101@c.us/messages" in text
    assert "4 attempt(s)" in text and "HTTP 503" in text and "engine restarting" in text


def test_total_time_bounds_the_retries(fake: FakeWaha) -> None:
    one_chat(fake)
    fake.faults = [Fault("slow", delay=0.5) for _ in range(20)]
    started = time.monotonic()
    with pytest.raises(WahaUnavailable) as info:
        run(fake, messages_job, timeout=0.2, max_attempts=50, max_retry_seconds=1.0)
    assert time.monotonic() - started < 2.5
    assert 2 <= info.value.attempts < 50
    assert info.value.status is None and "no HTTP response" in str(info.value)


def test_connection_refused_is_unavailable(fake: FakeWaha) -> None:
    async def job() -> None:
        async with WahaClient(
            "http://127.0.0.1:9", max_attempts=2, backoff_initial=0.01, backoff_max=0.02
        ) as client:
            await client.session_info("default")

    with pytest.raises(WahaUnavailable) as info:
        asyncio.run(job())
    assert info.value.attempts == 2


def test_401_is_one_request_one_clear_error_and_the_key_stays_secret(
    fake: FakeWaha, caplog: pytest.LogCaptureFixture
) -> None:
    fake.api_key = "the-right-key"
    one_chat(fake)
    with caplog.at_level(logging.DEBUG), pytest.raises(WahaAuthError) as info:
        run(fake, messages_job, api_key=KEY)
    assert len(fake.seen) == 1
    assert fake.seen[0].headers["x-api-key"] == KEY  # sent as a header ...
    assert KEY not in fake.seen[0].raw_path and not fake.seen[0].params.get("x-api-key")  # ... only
    message = str(info.value)
    assert message == f"WAHA rejected the API key (401) at {fake.url}; check WAHA_API_KEY"  # type: ignore[attr-defined]
    assert KEY not in message
    assert KEY not in caplog.text
    assert all(KEY not in str(record.args) for record in caplog.records)
    assert KEY not in repr(make_client(fake, api_key=KEY))


def test_missing_key_says_so(fake: FakeWaha) -> None:
    fake.api_key = "the-right-key"
    with pytest.raises(WahaAuthError, match=r"requires an API key \(401\).*set WAHA_API_KEY"):
        run(fake, lambda c: c.session_info("default"))
    assert len(fake.seen) == 1


def test_right_key_works_and_secretstr_is_accepted(fake: FakeWaha) -> None:
    from pydantic import SecretStr

    fake.api_key = KEY
    info, _ = run(fake, lambda c: c.session_info("default"), api_key=SecretStr(KEY))
    assert info.me_id == ME and info.status == "WORKING"


def test_unknown_session_is_not_retried(fake: FakeWaha) -> None:
    with pytest.raises(WahaSessionNotFound, match="sales"):
        run(fake, lambda c: c.session_info("sales"))
    with pytest.raises(WahaSessionNotFound):
        run(fake, lambda c: c.chat_messages("sales", CHAT, until=NOW))
    assert len(fake.seen) == 2


def test_other_client_errors_are_not_retried(fake: FakeWaha) -> None:
    one_chat(fake)
    fake.faults = [Fault("status", 422, NOT_IMPLEMENTED_422)]
    with pytest.raises(WahaRequestError, match="not implemented by the engine"):
        run(fake, messages_job)
    fake.faults = [
        Fault("status", 404, {"statusCode": 404, "message": "Chat not found", "error": "Not Found"})
    ]
    with pytest.raises(WahaNotFound) as info:
        run(fake, messages_job)
    assert not isinstance(info.value, WahaSessionNotFound)
    assert len(fake.seen) == 2


def test_server_version_and_session(fake: FakeWaha) -> None:
    version, _ = run(fake, lambda c: c.server_version())
    assert (version.version, version.engine) == ("2026.7.1", "NOWEB")


def test_server_version_is_asked_once_per_process_unless_fresh(fake: FakeWaha) -> None:
    first, _ = run(fake, lambda c: c.server_version())
    again, client = run(fake, lambda c: c.server_version())  # another client of the same server
    assert again == first and client.stats.requests == 0
    _, client = run(fake, lambda c: c.server_version(max_age=0))
    assert client.stats.requests == 1


def test_concurrency_limit_and_keep_alive(fake: FakeWaha) -> None:
    fake.latency = 0.05
    for i in range(24):
        chat = f"1415555{i:04d}@c.us"
        fake.chats[chat] = [message(chat, "A", float(NOW - 1))]

    async def job(client: WahaClient) -> list[Any]:
        return await asyncio.gather(
            *(client.chat_messages("default", f"1415555{i:04d}@c.us", until=NOW) for i in range(24))
        )

    results, client = run(fake, job, concurrency=4)
    assert all(r.raw.height == 1 for r in results)
    assert fake.max_in_flight <= 4
    assert len({s.client for s in fake.seen}) <= 4  # connections were reused
    assert client.stats.requests == 24 and client.stats.bytes_received > 0


def test_a_freed_slot_sends_the_next_request_before_the_page_is_parsed(fake: FakeWaha) -> None:
    """With every slot taken, a finished request's slot goes to a waiting request at once: the
    waiting request is on the wire while the finished one's page is still being parsed."""
    one_chat(fake, n=1)
    sent_when_parsed: list[int] = []

    async def job(client: WahaClient) -> list[Any]:
        def parse(content: bytes) -> bytes:
            sent_when_parsed.append(client.stats.requests)
            return content

        path = client.path("api", "default", "chats", CHAT, "messages")
        return await asyncio.gather(*(client.get(path, {"limit": 1}, parse=parse) for _ in range(3)))

    _, client = run(fake, job, concurrency=1)
    assert client.stats.requests == 3
    assert sent_when_parsed == [2, 3, 3]  # the first two pages were parsed after the next was sent


def test_big_pages_are_parsed_off_the_event_loop_one_at_a_time(fake: FakeWaha) -> None:
    """Pages over `_THREAD_PARSE_BYTES` are parsed in a worker thread, never two at once (the JSON
    reader briefly holds several times a page's size)."""
    one_chat(fake, n=2_000)
    parsing = {"now": 0, "most": 0, "threads": set()}
    lock = threading.Lock()

    def parse(content: bytes) -> int:
        assert len(content) > _THREAD_PARSE_BYTES
        with lock:
            parsing["now"] += 1
            parsing["most"] = max(parsing["most"], parsing["now"])
            parsing["threads"].add(threading.current_thread().name)
        time.sleep(0.05)
        with lock:
            parsing["now"] -= 1
        return len(content)

    async def job(client: WahaClient) -> list[int]:
        path = client.path("api", "default", "chats", CHAT, "messages")
        return await asyncio.gather(*(client.get(path, {"limit": 2_000}, parse=parse) for _ in range(4)))

    sizes, _ = run(fake, job, concurrency=4)
    assert len(sizes) == 4
    assert parsing["most"] == 1
    assert threading.main_thread().name not in parsing["threads"]


def test_a_response_is_freed_as_soon_as_its_body_is_read(fake: FakeWaha) -> None:
    """No request leaves a reference cycle behind: its body would stay in memory until the garbage
    collector's next pass over the oldest generation (on a 1,000,000 message stream, ~150 MB)."""
    one_chat(fake, n=500)

    async def job(client: WahaClient) -> list[Any]:
        path = client.path("api", "default", "chats", CHAT, "messages")
        pages = await asyncio.gather(*(client.get(path, {"limit": 500}) for _ in range(3)))
        return [len(page) for page in pages]

    gc.collect()
    gc.disable()  # a cycle would stay visible
    try:
        sizes, _ = run(fake, job)
        assert sizes == [500, 500, 500]
        assert [o for o in gc.get_objects() if isinstance(o, httpx.Response)] == []
    finally:
        gc.enable()


def test_lists_are_paged_deduplicated_and_always_limited(fake: FakeWaha) -> None:
    fake.chat_items = [
        {"id": f"1415555{i:04d}@s.whatsapp.net", "conversationTimestamp": NOW} for i in range(120)
    ]
    fake.chat_items.insert(60, dict(fake.chat_items[59]))  # a repeated item (drifting page boundary)
    fake.contact_items = [{"id": f"1415555{i:04d}@c.us", "pushname": f"P{i}"} for i in range(75)]
    fake.lid_items = [{"lid": f"{i}@lid", "pn": f"1415555{i:04d}@c.us"} for i in range(3)]

    async def job(client: WahaClient) -> tuple[Any, ...]:
        return (
            await client.chats("default"),
            await client.contacts("default"),
            await client.lids("default"),
            await client.chats_overview("default"),
        )

    (chats, contacts, lids, overview), _ = run(fake, job)
    assert len(chats) == 120 and len(contacts) == 75 and len(lids) == 3 and len(overview) == 120
    chat_requests = [s for s in fake.seen if s.path == "/api/default/chats"]
    assert [s.params["offset"] for s in chat_requests] == ["0", "50", "100"]
    assert chat_requests[0].params["sortBy"] == "id" and chat_requests[0].params["sortOrder"] == "asc"
    assert all("limit" in s.params for s in fake.seen)
    contacts_request = next(s for s in fake.seen if s.path == "/api/contacts/all")
    assert contacts_request.params["session"] == "default"


def test_lists_from_servers_that_ignore_paging(fake: FakeWaha) -> None:
    fake.list_mode = "ignore_paging"  # 2024.10.8 contacts: always everything
    fake.contact_items = [{"id": f"1415555{i:04d}@c.us"} for i in range(130)]
    contacts, _ = run(fake, lambda c: c.contacts("default"))
    assert len(contacts) == 130
    assert len(fake.seen) <= 3


def test_lean_transport_unless_a_proxy_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    from wahaflow.waha.transport import StreamTransport

    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(WahaClient("http://waha:3000")._http._transport, StreamTransport)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy:8080")
    assert not isinstance(WahaClient("http://waha:3000")._http._transport, StreamTransport)
    monkeypatch.setenv("NO_PROXY", "waha")
    assert isinstance(WahaClient("http://waha:3000")._http._transport, StreamTransport)
