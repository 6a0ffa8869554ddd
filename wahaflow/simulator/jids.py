"""WhatsApp id ("JID") forms the simulator speaks (waha-api.md §4).

Users are `<digits>@c.us` in WAHA's API and `<digits>@s.whatsapp.net` in NOWEB/GOWS raw data (and in
NOWEB's `/chats` ids); privacy ids are `<digits>@lid`; groups end with `@g.us`.
"""

from __future__ import annotations

C_US = "@c.us"
S_WHATSAPP_NET = "@s.whatsapp.net"
LID = "@lid"
G_US = "@g.us"


def to_c_us(jid: str) -> str:
    """`jid` with a `@s.whatsapp.net` suffix written as `@c.us` (other forms unchanged)."""
    if jid.endswith(S_WHATSAPP_NET):
        return jid[: -len(S_WHATSAPP_NET)] + C_US
    return jid


def to_s_whatsapp_net(jid: str) -> str:
    """`jid` with a `@c.us` suffix written as `@s.whatsapp.net` (Baileys/whatsmeow raw form)."""
    if jid.endswith(C_US):
        return jid[: -len(C_US)] + S_WHATSAPP_NET
    return jid


def is_group(jid: str) -> bool:
    """True for group ids (`…@g.us`)."""
    return jid.endswith(G_US)


def user_part(jid: str) -> str:
    """The part before `@`."""
    return jid.split("@", 1)[0]


def wid(jid: str) -> dict[str, str]:
    """whatsapp-web.js `Wid` object of `jid`: `{server, user, _serialized}`."""
    user, _, server = jid.partition("@")
    return {"server": server, "user": user, "_serialized": jid}
