"""The server around the data: auth, errors, faults, arrivals, session status, counters, the CLI."""

from __future__ import annotations

import argparse
import contextlib
import io
import threading
import time

import httpx
import orjson
import polars as pl
import pytest

from wahaflow.simulator.serve import main as serve_main
from wahaflow.simulator.server import SimulatorServer
from wahaflow_tests.plugins.simulator import SIMULATOR_API_KEY
from wahaflow_tests.simulator.conftest import normalize, path_id, to_frame


def _get(server: SimulatorServer, path: str, **params: object) -> httpx.Response:
    return httpx.get(server.url + path, params=params, headers={"X-Api-Key": SIMULATOR_API_KEY}, timeout=10)


def test_fixture_and_auth(simulator: SimulatorServer) -> None:
    assert simulator.account.engine == "NOWEB"
    assert (simulator.account.n_chats, simulator.account.n_messages) == (60, 400)
    unauthorized = {"message": "Unauthorized", "statusCode": 401}
    for headers in ({}, {"X-Api-Key": "wrong"}):
        r = httpx.get(f"{simulator.url}/api/default/chats", headers=headers)
        assert (r.status_code, r.json()) == (401, unauthorized)
    assert httpx.get(f"{simulator.url}/ping").status_code == 401
    assert _get(simulator, "/api/default/chats").status_code == 200
    assert (
        httpx.get(f"{simulator.url}/api/default/chats", params={"x-api-key": SIMULATOR_API_KEY}).status_code
        == 200
    )
    simulator.config.api_key = None
    assert httpx.get(f"{simulator.url}/api/default/chats").status_code == 200


def test_unknown_session_and_route(simulator: SimulatorServer) -> None:
    r = _get(simulator, "/api/sales/chats")
    assert r.status_code == 404
    assert r.json() == {
        "message": "We didn't find a session with name 'sales'.\nPlease start it first by using "
        "POST /api/sessions/sales/start request",
        "error": "Not Found",
        "statusCode": 404,
    }
    r = _get(simulator, "/api/sessions/sales")
    assert (r.status_code, r.json()["message"]) == (404, "Session not found")
    assert _get(simulator, "/api/contacts/all", session="sales").status_code == 404
    r = _get(simulator, "/api/nothing/here/at/all")
    assert r.status_code == 404 and r.json()["message"] == "Cannot GET /api/nothing/here/at/all"


def test_tcp_nodelay_and_counters(simulator: SimulatorServer) -> None:
    simulator.stats.reset()
    with httpx.Client(base_url=simulator.url, headers={"X-Api-Key": SIMULATOR_API_KEY}) as http:
        for _ in range(3):
            http.get("/api/default/chats", params={"limit": 5})
        http.get("/api/default/chats/overview")
        http.get("/api/default/chats", params={"limit": "x"})
        assert simulator.tcp_nodelay() == [True]  # the kept-alive connection has Nagle off
    snap = simulator.stats.snapshot()
    assert snap["total"] == 5
    assert snap["by_route"] == {"chats": 4, "overview": 1}
    assert snap["by_status"] == {200: 4, 400: 1}
    simulator.reset()
    assert simulator.stats.total == 0


@pytest.mark.parametrize(
    ("kind", "status"), [("500", 500), ("429", 429), ("422", 422), ("truncated", 200), ("slow", 200)]
)
def test_fault_kinds(simulator_factory, kind: str, status: int) -> None:
    server = simulator_factory(fault_rate=1.0, fault_kinds=(kind,), slow_seconds=0.3)
    started = time.perf_counter()
    r = httpx.get(f"{server.url}/api/default/chats", params={"limit": 3}, timeout=10)
    elapsed = time.perf_counter() - started
    assert r.status_code == status
    if kind == "500":
        body = r.json()
        assert set(body) == {"statusCode", "timestamp", "exception", "request", "version"}
        assert body["request"]["path"] == "/api/default/chats?limit=3"
    elif kind == "429":
        assert r.headers["retry-after"] == "1" and r.json()["statusCode"] == 429
    elif kind == "422":
        assert r.json() == {
            "error": "Session status is not as expected. Try again later or restart the session",
            "session": "default",
            "status": "STARTING",
            "expected": ["WORKING"],
        }
    elif kind == "truncated":
        assert int(r.headers["content-length"]) == len(r.content)
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(r.content)
    else:
        assert elapsed >= 0.3 and len(r.json()) == 3
    assert httpx.get(f"{server.url}/ping").status_code == 200  # only data requests fail
    assert server.stats.faults[kind] == 1


def test_disconnect_fault(simulator_factory) -> None:
    server = simulator_factory(fault_rate=1.0, fault_kinds=("disconnect",))
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.get(f"{server.url}/api/default/chats", timeout=5)
    server.config.fault_rate = 0.0
    assert httpx.get(f"{server.url}/api/default/chats", timeout=5).status_code == 200


def test_faults_are_reproducible(simulator_factory) -> None:
    def outcomes(server: SimulatorServer) -> list[int]:
        with httpx.Client(base_url=server.url) as http:
            return [http.get("/api/default/chats", params={"limit": 1}).status_code for _ in range(30)]

    a = simulator_factory(fault_rate=0.4, fault_kinds=("500", "429"), fault_seed=9)
    b = simulator_factory(fault_rate=0.4, fault_kinds=("500", "429"), fault_seed=9)
    first = outcomes(a)
    assert first == outcomes(b)
    assert {200, 500, 429} <= set(first)
    a.reset()
    assert outcomes(a) == first


def test_latency(simulator_factory) -> None:
    server = simulator_factory(latency_ms=150)
    started = time.perf_counter()
    httpx.get(f"{server.url}/ping")
    assert time.perf_counter() - started >= 0.15


def test_session_status(simulator_factory) -> None:
    server = simulator_factory(session_status="STARTING")
    r = httpx.get(f"{server.url}/api/default/chats")
    assert r.status_code == 422 and r.json()["status"] == "STARTING"
    assert httpx.get(f"{server.url}/api/sessions/default").json()["status"] == "STARTING"
    server.config.session_status = "STOPPED"
    assert httpx.get(f"{server.url}/api/default/chats").status_code == 404
    assert httpx.get(f"{server.url}/api/sessions").json() == []
    assert len(httpx.get(f"{server.url}/api/sessions", params={"all": "true"}).json()) == 1
    # a session that becomes WORKING while the gate waits answers normally
    server.config.session_status = "STARTING"
    server.config.status_wait_seconds = 2.0
    threading.Timer(0.3, lambda: setattr(server.config, "session_status", "WORKING")).start()
    assert httpx.get(f"{server.url}/api/default/chats", timeout=10).status_code == 200


def test_arrivals_while_paging_change_data_and_ground_truth(simulator_factory) -> None:
    server = simulator_factory(chats=5, messages=300, seed=4, arrivals_per_request=1)
    account = server.account
    chat = account.chats.chat_id[max(range(5), key=lambda c: len(account.chat_rows(c)))]
    before = account.ground_truth_messages().filter(pl.col("chat_id") == chat).height
    seen: list[dict] = []
    with httpx.Client(base_url=server.url) as http:
        offset = 0
        while True:  # the naive way: newest first, offset += limit
            page = http.get(
                f"/api/default/chats/{path_id(chat)}/messages", params={"limit": 20, "offset": offset}
            )
            seen += page.json()
            if len(page.json()) < 20:
                break
            offset += 20
        arrived = server.stats.arrivals
        assert arrived == server.stats.by_route["messages"]
        truth = account.ground_truth_messages().filter(pl.col("chat_id") == chat)
        assert truth.height == before + arrived
        ids = [m["id"] for m in seen]
        assert len(ids) > len(set(ids))  # offset drift: pages overlap
        server.config.arrivals_per_request = 0
        final = http.get(f"/api/default/chats/{path_id(chat)}/messages", params={"limit": 0}).json()
    served = to_frame([normalize("default", chat, m, account.me) for m in final])
    assert served.equals(account.ground_truth_messages().filter(pl.col("chat_id") == chat))


def test_several_sessions(simulator_factory) -> None:
    server = simulator_factory(sessions=("default", "sales"), engine="GOWS")
    assert set(server.accounts) == {"default", "sales"}
    names = {s["name"] for s in httpx.get(f"{server.url}/api/sessions").json()}
    assert names == {"default", "sales"}
    a = httpx.get(f"{server.url}/api/sales/chats").json()
    b = httpx.get(f"{server.url}/api/default/chats").json()
    assert {c["id"] for c in a}.isdisjoint(c["id"] for c in b)


def test_cli_serves_until_stopped() -> None:
    args = argparse.Namespace(
        preset=None,
        chats=20,
        messages=100,
        seed=None,
        engine="WEBJS",
        latency_ms=0.0,
        fault_rate=0.0,
        host="127.0.0.1",
        port=0,
        api_key="cli-key",
    )
    stop = threading.Event()
    out = io.StringIO()
    result: list[int] = []
    with contextlib.redirect_stdout(out):
        thread = threading.Thread(target=lambda: result.append(serve_main(args, stop)))
        thread.start()
        deadline = time.monotonic() + 10
        while "serving" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
        url = out.getvalue().split("serving ")[1].split()[0]
        r = httpx.get(f"{url}/api/default/chats", headers={"X-Api-Key": "cli-key"})
        stop.set()
        thread.join(10)
    assert r.status_code == 200 and len(r.json()) == 20
    assert result == [0]
    assert "20 chats, 100 messages" in out.getvalue()


def test_mutations_are_served_and_reported(simulator_factory) -> None:
    server = simulator_factory(preset="seed", engine="NOWEB")
    account = server.account
    assert account.n_chats == 1_172
    events: list[tuple[str, list[str]]] = []
    account.subscribe(lambda event, ids: events.append((event, ids)))
    chat_id = account.add_chat(name="New person", messages=2)
    chats = httpx.get(f"{server.url}/api/default/chats", params={"sortBy": "conversationTimestamp"}).json()
    assert chats[-1]["id"] == chat_id.replace("@c.us", "@s.whatsapp.net")  # newest activity, asc order
    url = f"{server.url}/api/default/chats/{path_id(chat_id)}/messages"
    first, second = httpx.get(url).json()
    account.edit_message(second["id"], "edited text")
    account.revoke_message(first["id"])
    account.set_ack(second["id"], 4)
    (only,) = httpx.get(url).json()
    assert (only["id"], only["body"], only["ackName"]) == (second["id"], "edited text", "PLAYED")
    assert [e for e, _ in events] == ["message.any", "message.edited", "message.revoked", "message.ack"]
    assert set(events[0][1]) == {first["id"], second["id"]}


def test_webjs_empty_batch_error_knob(simulator_factory) -> None:
    server = simulator_factory(chats=3, messages=600, seed=2, engine="WEBJS", webjs_empty_batch_error=True)
    account = server.account
    c = max(range(3), key=lambda c: len(account.chat_rows(c)))
    oldest = int(account.col("ts")[account.chat_rows(c)[0]])
    url = f"{server.url}/api/default/chats/{path_id(account.chats.chat_id[c])}/messages"
    r = httpx.get(url, params={"filter.timestamp.lte": oldest})  # nothing loaded passes the filter
    assert r.status_code == 500
    assert "reading 't'" in r.json()["exception"]["message"]
