"""Query-string parsing with NestJS/class-validator style errors (400 bodies listing every problem)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from wahaflow.simulator.errors import bad_request
from wahaflow.simulator.shapes import ACK_BY_NAME


class Query:
    """Typed access to query parameters; collects validation messages, `check()` raises a 400."""

    def __init__(self, params: Mapping[str, str]) -> None:
        self.params = params
        self.errors: list[str] = []

    def number(self, name: str, default: float | None = None) -> float | None:
        raw = self.params.get(name)
        if raw is None:
            return default
        try:
            value = float(raw) if raw.strip() else 0.0
        except ValueError:
            value = math.nan
        if math.isnan(value) or math.isinf(value):
            self.errors.append(f"{name} must be a number conforming to the specified constraints")
            return default
        return value

    def count(self, name: str, default: int | None = None) -> int | None:
        """A number used as limit/offset: truncated to int; limit 0 or below means no limit."""
        value = self.number(name)
        return default if value is None else int(value)

    def boolean(self, name: str, default: bool | None = None) -> bool | None:
        raw = self.params.get(name)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        self.errors.append(f"{name} must be a boolean value")
        return default

    def choice(self, name: str, values: Sequence[str], default: str | None = None) -> str | None:
        raw = self.params.get(name)
        if raw is None:
            return default
        if raw not in values:
            self.errors.append(f"{name} must be one of the following values: {', '.join(values)}")
            return default
        return raw

    def strings(self, name: str) -> list[str]:
        """Every value of a repeatable parameter (`ids=a&ids=b`)."""
        getlist = getattr(self.params, "getlist", None)
        if getlist is not None:
            return list(getlist(name))
        value = self.params.get(name)
        return [] if value is None else [value]

    def text(self, name: str, default: str | None = None) -> str | None:
        return self.params.get(name, default)

    def ack(self, name: str = "filter.ack") -> int | None:
        """`filter.ack` by name; an unknown name is WAHA's transform error (a plain-string 400)."""
        raw = self.params.get(name)
        if raw is None:
            return None
        if raw not in ACK_BY_NAME:
            raise bad_request(f"Invalid ack: '{raw}'")
        return ACK_BY_NAME[raw]

    def check(self) -> None:
        if self.errors:
            raise bad_request(self.errors)


def body_errors(body: Any) -> list[str]:
    """Validation messages of a `POST /chats/overview` body (`pagination` is required)."""
    if not isinstance(body, dict):
        return ["pagination should not be null or undefined", "pagination must be an object"]
    errors = []
    pagination = body.get("pagination")
    if pagination is None:
        errors.append("pagination should not be null or undefined")
    elif not isinstance(pagination, dict):
        errors.append("pagination must be an object")
    else:
        for key in ("limit", "offset"):
            value = pagination.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                errors.append(f"pagination.{key} must be a number conforming to the specified constraints")
    flt = body.get("filter")
    if flt is not None:
        ids = flt.get("ids") if isinstance(flt, dict) else None
        if not isinstance(flt, dict) or (ids is not None and not isinstance(ids, list)):
            errors.append("filter.ids must be an array")
    return errors
