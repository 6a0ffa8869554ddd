"""WAHA webhook envelopes for the tests, after reference/waha-samples/webhook-*.json."""

from __future__ import annotations

import copy
from typing import Any

import orjson

ME = "14155550100@c.us"
ALICE = "14155550101@c.us"
GROUP = "120363025246125888@g.us"
BOB = "14155550102@c.us"

ENVIRONMENT = {
    "version": "2026.7.1",
    "engine": "WEBJS",
    "tier": "CORE",
    "browser": "/usr/bin/chromium",
    "platform": "linux/x64",
    "worker": {"id": None},
}

MESSAGE = {
    "id": "evt_01j92t1nj884g7zwyrd6z1rv0w",
    "timestamp": 1727745021512,
    "event": "message",
    "session": "default",
    "metadata": {"tenant.id": "acme"},
    "me": {"id": ME, "pushName": "Acme Support"},
    "payload": {
        "id": f"false_{ALICE}_2F7A9C0B4E6D8F1A3C5E7B9D0F2A4C6E",
        "timestamp": 1727745021,
        "from": ALICE,
        "fromMe": False,
        "source": "app",
        "to": ME,
        "body": "Hi! Are we still on for tomorrow?",
        "hasMedia": False,
        "media": None,
        "ack": 1,
        "ackName": "SERVER",
        "location": None,
        "vCards": [],
        "_data": {
            "id": {
                "fromMe": False,
                "remote": ALICE,
                "id": "2F7A9C0B4E6D8F1A3C5E7B9D0F2A4C6E",
                "_serialized": f"false_{ALICE}_2F7A9C0B4E6D8F1A3C5E7B9D0F2A4C6E",
            },
            "body": "Hi! Are we still on for tomorrow?",
            "type": "chat",
            "t": 1727745021,
            "notifyName": "Alice",
        },
    },
    "engine": "WEBJS",
    "environment": ENVIRONMENT,
}

ACK = {
    "id": "evt_01j92tafaw355qakgd2avsqwh2",
    "timestamp": 1727745310044,
    "event": "message.ack",
    "session": "default",
    "me": {"id": ME, "pushName": "Acme Support"},
    "payload": {
        "id": f"true_{ALICE}_3A5F0B1C2D3E4F5A6B7C",
        "from": ME,
        "to": ALICE,
        "fromMe": True,
        "ack": 3,
        "ackName": "READ",
    },
    "engine": "WEBJS",
    "environment": ENVIRONMENT,
}

SESSION_STATUS = {
    "id": "evt_01j92n8gnrf8qy40ygecyys9e9",
    "timestamp": 1727740003000,
    "event": "session.status",
    "session": "default",
    "me": {"id": ME, "pushName": "Acme Support"},
    "payload": {
        "name": "default",
        "status": "WORKING",
        "statuses": [
            {"status": "STOPPED", "timestamp": 1727740001000},
            {"status": "STARTING", "timestamp": 1727740002000},
            {"status": "WORKING", "timestamp": 1727740003000},
        ],
        "data": None,
    },
    "engine": "NOWEB",
    "environment": {**ENVIRONMENT, "engine": "NOWEB", "browser": None},
}


def envelope(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of `base`; `payload__x=v` sets `payload["x"]`, `x=None` removes top-level `x`."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if key.startswith("payload__"):
            out["payload"][key[len("payload__") :]] = value
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def body(envelope: dict[str, Any]) -> bytes:
    return orjson.dumps(envelope)
