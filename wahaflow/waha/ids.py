"""WhatsApp id rules (waha-api.md §4), in plain Python and as Polars expressions.

- `<digits>@s.whatsapp.net` (NOWEB/GOWS raw form, possibly with a `:<device>` suffix) is written
  `<digits>@c.us`; a bare phone number is written `<digits>@c.us`; every other id is kept as is.
- A chat is a group iff its id ends with `@g.us`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import polars as pl

_SWN = re.compile(r"^([^@:]+)(?::\d+)?@s\.whatsapp\.net$")
_DIGITS = re.compile(r"^\d+$")

# Regexes for Polars (Rust regex syntax; `$1` style replacement).
_SWN_RS = r"^([^@:]+)(?::\d+)?@s\.whatsapp\.net$"
_DIGITS_RS = r"^(\d+)$"

STATUS_BROADCAST = "status@broadcast"


def normalize_id(value: str | None) -> str | None:
    """`value` in the canonical form (`@s.whatsapp.net` and bare digits -> `@c.us`); None stays None."""
    if value is None:
        return None
    value = value.strip()
    match = _SWN.match(value)
    if match:
        return f"{match.group(1)}@c.us"
    if _DIGITS.match(value):
        return f"{value}@c.us"
    return value


def normalize_id_expr(expr: pl.Expr) -> pl.Expr:
    """Vectorized `normalize_id` over a String expression."""
    stripped = expr.str.strip_chars()
    return stripped.str.replace(_SWN_RS, "${1}@c.us").str.replace(_DIGITS_RS, "${1}@c.us")


def is_group_expr(chat_id: pl.Expr) -> pl.Expr:
    """True for group chat ids (`@g.us`)."""
    return chat_id.str.ends_with("@g.us")


def is_direct_expr(chat_id: pl.Expr) -> pl.Expr:
    """True for 1:1 chat ids (a person: `@c.us` or `@lid`, after normalization)."""
    return chat_id.str.ends_with("@c.us") | chat_id.str.ends_with("@lid")


def serialized_id(value: Any) -> str | None:
    """An id field as a string: WAHA's string form, or the `_serialized` of an (old WEBJS) id object."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict):
        inner = value.get("_serialized")
        if isinstance(inner, str) and inner:
            return inner
    return None


def path_segment(value: str) -> str:
    """`value` URL-encoded for use as one path segment (`@` -> `%40`, `/` -> `%2F`)."""
    return quote(value, safe="")
