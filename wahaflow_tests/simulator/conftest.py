"""Helpers for the simulator tests: shared read-only servers per engine, OpenAPI validation, and a
reference importer that applies the ground-truth normalization rules to what is served."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import polars as pl
import pytest
from openapi_schema_validator import OAS30Validator

from wahaflow.schemas import MESSAGES
from wahaflow.simulator.account import ENGINES, GROUND_TRUTH_MESSAGE_COLUMNS, AccountSpec
from wahaflow.simulator.config import ServerConfig
from wahaflow.simulator.server import SimulatorServer

REPO_ROOT = Path(__file__).resolve().parents[2]
API_KEY = "k"

# The OpenAPI document (2026.7.1) and the sample payloads ship with the tests (see its README).
REFERENCE_DIR = REPO_ROOT / "wahaflow_tests" / "reference"


# The OpenAPI document is generated from WAHA's NestJS DTOs: it marks every non-optional TypeScript
# property `required` and almost nothing `nullable`, while WAHA's real answers (and the hand-written
# waha-samples, which fail the strict document too) omit `undefined` fields and carry nulls. These are
# the only relaxations applied; everything else (types, enums, other required fields) is strict.
RELAXATIONS: dict[str, dict[str, Any]] = {
    "WAMessage": {
        "not_required": ["to", "participant", "mediaUrl"],  # undefined in 1:1 / 2026 engines
        "nullable": ["body", "ack", "media", "location", "replyTo", "to", "participant"],
    },
    "WAMedia": {"nullable": ["filename", "error"]},
    "ReplyToMessage": {"nullable": ["media"]},
    "SessionInfo": {"nullable": ["me", "presence"]},
    "WAHAEnvironment": {"nullable": ["browser"]},  # null on NOWEB/GOWS (no browser)
    "LidToPhoneNumber": {"nullable": ["pn"]},  # /lids/{lid} of an unmapped lid
}


class OpenApi:
    """Validates simulator answers against the response schemas of WAHA's OpenAPI document."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.components = copy.deepcopy(document["components"])
        schemas = self.components["schemas"]
        for name, relax in RELAXATIONS.items():
            schema = schemas[name]
            schema["required"] = [
                f for f in schema.get("required", []) if f not in relax.get("not_required", [])
            ]
            for prop in relax.get("nullable", []):
                # `nullable` does not reach into `$ref`/`allOf`/`enum`: allow null as an alternative
                original = schema["properties"][prop]
                schema["properties"][prop] = {"anyOf": [original, {"nullable": True, "enum": [None]}]}

    def response_schema(self, path: str, method: str = "get", status: str = "200") -> dict[str, Any] | None:
        response = self.document["paths"][path][method]["responses"].get(status, {})
        content = response.get("content", {}).get("application/json")
        return None if content is None else content["schema"]

    def errors(self, path: str, instance: Any, method: str = "get", status: str = "200") -> list[str]:
        """Validation errors of `instance` as the answer of `method path` (empty = valid)."""
        schema = self.response_schema(path, method, status)
        assert schema is not None, f"the document defines no schema for {method.upper()} {path} {status}"
        validator = OAS30Validator({**schema, "components": self.components})
        return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(instance)]


@pytest.fixture(scope="session")
def openapi() -> OpenApi:
    return OpenApi(json.loads((REFERENCE_DIR / "waha-openapi.json").read_text()))


@pytest.fixture(scope="session")
def samples() -> dict[str, Any]:
    found = {p.name: json.loads(p.read_text()) for p in (REFERENCE_DIR / "waha-samples").glob("*.json")}
    assert found, f"no sample payloads under {REFERENCE_DIR}"
    return found


@pytest.fixture(scope="module")
def engine_servers() -> Iterator[dict[str, SimulatorServer]]:
    """One small read-only server per engine (60 chats, 400 messages, seed 42), shared by a module."""
    servers = {
        engine: SimulatorServer(
            AccountSpec(seed=42, n_chats=60, n_messages=400, engine=engine),
            config=ServerConfig(api_key=API_KEY),
        ).start()
        for engine in ENGINES
    }
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def client(server: SimulatorServer, **kwargs: Any) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"X-Api-Key": API_KEY}, timeout=10, **kwargs)


def path_id(chat_id: str) -> str:
    """A chat or message id as a URL path segment (`@` -> `%40`)."""
    return quote(chat_id, safe="")


# ----------------------------------------------------------------------------- reference importer


def to_c_us(jid: str) -> str:
    return jid.replace("@s.whatsapp.net", "@c.us")


def normalize(waha_session: str, chat_id: str, message: dict[str, Any], me: str) -> dict[str, Any]:
    """A served message as a ground-truth row (the rules in `wahaflow.simulator.account`)."""
    from_me = message["fromMe"]
    if from_me:
        sender = me
    elif chat_id.endswith("@g.us"):
        sender = to_c_us(message["participant"])
    else:
        sender = chat_id
    body = message["body"]
    return {
        "waha_session": waha_session,
        "message_id": message["id"],
        "chat_id": chat_id,
        "sent_at": message["timestamp"],
        "from_me": from_me,
        "sender_id": sender,
        "body": body.replace("\x00", "") if body is not None else None,
        "has_media": message["hasMedia"],
        "ack": message["ack"],
    }


def to_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    schema = {k: MESSAGES[k] for k in GROUND_TRUTH_MESSAGE_COLUMNS}
    frame = pl.DataFrame(rows, schema={**schema, "sent_at": pl.Int64}, orient="row")
    frame = frame.with_columns(pl.from_epoch("sent_at", "s").dt.replace_time_zone("UTC"))
    return frame.cast(schema).sort("chat_id", "sent_at", "message_id")  # type: ignore[arg-type]


def fetch_chat_asc(http: httpx.Client, session: str, chat: str, upper: int, limit: int = 100) -> list[dict]:
    """NOWEB/GOWS paging: oldest first with a frozen upper bound, offset advancing by `limit`."""
    out: list[dict] = []
    offset = 0
    while True:
        page = http.get(
            f"/api/{session}/chats/{path_id(chat)}/messages",
            params={
                "limit": limit,
                "offset": offset,
                "sortBy": "timestamp",
                "sortOrder": "asc",
                "downloadMedia": "false",
                "filter.timestamp.lte": upper,
            },
        )
        page.raise_for_status()
        items = page.json()
        out.extend(items)
        if len(items) < limit:
            return out
        offset += limit


def fetch_chat_keyset(http: httpx.Client, session: str, chat: str, upper: int, limit: int = 50) -> list[dict]:
    """Engine-proof paging (waha-api.md §3): newest first, `lte` = oldest second seen, `gte=1`,
    de-duplicated by id, until a page adds nothing; a full page of one second raises the limit."""
    seen: dict[str, dict] = {}
    lte = upper
    while True:
        page = http.get(
            f"/api/{session}/chats/{path_id(chat)}/messages",
            params={
                "limit": limit,
                "downloadMedia": "false",
                "filter.timestamp.gte": 1,
                "filter.timestamp.lte": lte,
            },
        )
        page.raise_for_status()
        items = page.json()
        new = [m for m in items if m["id"] not in seen]
        seen.update((m["id"], m) for m in items)
        if len(items) == limit and len({m["timestamp"] for m in items}) == 1:
            limit *= 2
            continue
        if not new:
            return list(seen.values())
        lte = min(m["timestamp"] for m in items)
