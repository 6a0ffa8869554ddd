"""Every engine's answers validate against WAHA's OpenAPI document (with the documented
relaxations in conftest.RELAXATIONS) and carry the per-engine semantics of the samples."""

from __future__ import annotations

from typing import Any

import pytest

from wahaflow.simulator.server import SimulatorServer
from wahaflow_tests.simulator.conftest import OpenApi, client, path_id

ENGINES = ("WEBJS", "NOWEB", "GOWS")


def _group_and_direct(server: SimulatorServer) -> tuple[str, str]:
    a = server.account
    by_size = sorted(range(a.n_chats), key=lambda c: -len(a.chat_rows(c)))
    group = next(a.chats.chat_id[c] for c in by_size if a.chats.is_group[c])
    direct = next(a.chats.chat_id[c] for c in by_size if a.chats.chat_id[c].endswith("@c.us"))
    return group, direct


@pytest.mark.parametrize("engine", ENGINES)
def test_answers_validate_against_openapi(
    engine: str, engine_servers: dict[str, SimulatorServer], openapi: OpenApi
) -> None:
    server = engine_servers[engine]
    group, direct = _group_and_direct(server)
    checks: list[tuple[str, str, Any]] = []
    with client(server) as http:

        def get(template: str, url: str, **params: Any) -> Any:
            response = http.get(url, params=params)
            assert response.status_code == 200, response.text
            checks.append((template, url, response.json()))
            return response.json()

        get("/ping", "/ping")
        get("/health", "/health")
        get("/api/server/version", "/api/server/version")
        get("/api/version", "/api/version")
        get("/api/sessions", "/api/sessions", all="true")
        get("/api/sessions/{session}", "/api/sessions/default")
        get("/api/sessions/{session}/me", "/api/sessions/default/me")
        get("/api/{session}/chats/overview", "/api/default/chats/overview", limit=60)
        for chat in (group, direct):
            for download in ("true", "false"):
                msgs = get(
                    "/api/{session}/chats/{chatId}/messages",
                    f"/api/default/chats/{path_id(chat)}/messages",
                    limit=100,
                    downloadMedia=download,
                    **{"filter.timestamp.gte": 1},
                )
                assert msgs
            get(
                "/api/{session}/chats/{chatId}/messages/{messageId}",
                f"/api/default/chats/{path_id(chat)}/messages/{path_id(msgs[0]['id'])}",
            )
        get("/api/messages", "/api/messages", session="default", chatId=direct, limit=20)
        lids = get("/api/{session}/lids", "/api/default/lids")
        get("/api/{session}/lids/count", "/api/default/lids/count")
        get("/api/{session}/lids/{lid}", f"/api/default/lids/{path_id(lids[0]['lid'])}")
        if engine != "WEBJS":
            get("/api/{session}/chats/{chatId}/messages", "/api/default/chats/all/messages", limit=200)
        overview = http.post("/api/default/chats/overview", json={"pagination": {"limit": 5, "offset": 0}})
        assert overview.status_code == 201
        checks.append(("/api/{session}/chats/overview#post", "", overview.json()))
    for template, url, body in checks:
        method = "post" if template.endswith("#post") else "get"
        path = template.removesuffix("#post")
        problems = openapi.errors(path, body, method=method, status="201" if method == "post" else "200")
        assert not problems, (engine, url, problems[:5])


@pytest.mark.parametrize("engine", ENGINES)
def test_message_semantics_per_engine(engine: str, engine_servers: dict[str, SimulatorServer]) -> None:
    server = engine_servers[engine]
    me = server.account.me
    group, direct = _group_and_direct(server)
    with client(server) as http:
        gmsgs = http.get(f"/api/default/chats/{path_id(group)}/messages", params={"limit": 100}).json()
        dmsgs = http.get(f"/api/default/chats/{path_id(direct)}/messages", params={"limit": 100}).json()
    incoming_group = [m for m in gmsgs if not m["fromMe"]]
    own_direct = [m for m in dmsgs if m["fromMe"]]
    incoming_direct = [m for m in dmsgs if not m["fromMe"]]
    assert incoming_group and own_direct and incoming_direct
    for m in gmsgs:
        assert m["id"].endswith("_" + m["participant"])
    if engine == "NOWEB":
        assert all(m["from"] == direct and "to" not in m and "participant" not in m for m in dmsgs)
        assert all(m["to"] == group and m["from"] == group for m in gmsgs)
        assert all(m["_data"]["key"]["remoteJid"].endswith("@s.whatsapp.net") for m in dmsgs)
    elif engine == "WEBJS":
        assert all(m["from"] == me and m["to"] == direct for m in own_direct)
        assert all(m["from"] == direct and m["to"] == me for m in incoming_direct)
        assert all(m["from"] == group and m["to"] == me for m in incoming_group)
        assert all("participant" not in m and isinstance(m["body"], str) for m in dmsgs)
    else:
        assert all(m["from"] == direct and m["to"] is None and m["participant"] is None for m in dmsgs)
        assert all(m["to"] == m["participant"] for m in gmsgs)
    for m in gmsgs + dmsgs:
        assert m["media"] is not None or not m["hasMedia"]  # downloadMedia defaults to true


def test_media_null_without_download(engine_servers: dict[str, SimulatorServer]) -> None:
    server = engine_servers["NOWEB"]
    with client(server) as http:
        msgs = http.get(
            "/api/default/chats/all/messages", params={"limit": 400, "downloadMedia": "false"}
        ).json()
    media = [m for m in msgs if m["hasMedia"]]
    assert media and all(m["media"] is None for m in media)
    assert any(m["body"] is None for m in media)


@pytest.mark.parametrize("engine", ENGINES)
def test_chat_and_contact_items_match_the_samples(
    engine: str, engine_servers: dict[str, SimulatorServer], samples: dict[str, Any]
) -> None:
    server = engine_servers[engine]
    with client(server) as http:
        chats = http.get(
            "/api/default/chats", params={"sortBy": "conversationTimestamp", "sortOrder": "desc"}
        ).json()
        contacts = http.get("/api/contacts/all", params={"session": "default"}).json()
    assert len(chats) == server.account.n_chats
    timestamps = [c.get("timestamp", c.get("conversationTimestamp")) for c in chats]
    assert timestamps == sorted(timestamps, reverse=True)
    if engine == "WEBJS":
        sample_keys = set().union(*(c.keys() for c in samples["chats.webjs.json"]))
        assert all(set(c) <= sample_keys and set(c["id"]) == {"server", "user", "_serialized"} for c in chats)
        assert all(("groupMetadata" in c) == c["isGroup"] for c in chats)
        contact_keys = set().union(*(c.keys() for c in samples["contacts.webjs.json"]))
    elif engine == "NOWEB":
        sample_keys = set().union(*(c.keys() for c in samples["chats.noweb.json"])) | {"muteEndTime"}
        assert all(set(c) <= sample_keys for c in chats)
        assert any(c["id"].endswith("@s.whatsapp.net") for c in chats)
        assert not any(c["id"].endswith("@c.us") for c in chats)
        contact_keys = set().union(*(c.keys() for c in samples["contacts.noweb.json"])) | {"name"}
    else:
        assert all(set(c) == {"id", "name", "conversationTimestamp"} for c in chats)
        contact_keys = {"id", "name", "pushname"}
    assert all(set(c) <= contact_keys for c in contacts)
    assert len(contacts) == server.account.ground_truth_contacts().height
