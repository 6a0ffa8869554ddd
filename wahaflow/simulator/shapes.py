"""JSON shapes WAHA answers with, per engine (waha-api.md §2.2, §2.3, §2.6-§2.8 and waha-samples/).

Fields WAHA leaves `undefined` are omitted and `null` ones kept, as in the samples:
- `WAMessage`: NOWEB `from` = chat id, `to`/`participant` only in groups, `body` null when empty;
  WEBJS `from` = sender (own id for own messages), `to` = recipient, `participant` only in groups,
  `body` `""` when empty; GOWS `from` = chat id, `to` = `participant` = sender in groups and null in
  1:1. `_data` is trimmed raw engine data (Baileys `WebMessageInfo`, whatsapp-web.js model, whatsmeow
  event). `media` is null unless `downloadMedia=true`, while `hasMedia` stays true.
- `/chats` items are raw engine chats: WEBJS `id` is a `{server,user,_serialized}` object with
  `groupMetadata` on groups; NOWEB ids use `@s.whatsapp.net`; GOWS is `{id,name,conversationTimestamp}`.
- contacts: WEBJS whatsapp-web.js `Contact`, NOWEB Baileys contact (`notify` renamed `pushname`),
  GOWS `{id,name,pushname}`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from wahaflow.simulator import generate as gen
from wahaflow.simulator.account import Account, ContactEntry
from wahaflow.simulator.jids import to_s_whatsapp_net, user_part, wid

WAHA_VERSION = "2026.7.1"
ACK_NAMES = {-1: "ERROR", 0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ", 4: "PLAYED", None: "UNKNOWN"}
ACK_BY_NAME = {name: value for value, name in ACK_NAMES.items() if value is not None}
_WEBJS_TYPES = ("chat", "image", "video", "ptt", "document", "sticker")
_DEVICE_TYPES = {"3EB0": "web", "3A": "ios", "BAE5": "web"}

Json = dict[str, Any]


def environment(engine: str) -> Json:
    """`WAHAEnvironment` of `GET /api/server/version`."""
    return {
        "version": WAHA_VERSION,
        "engine": engine,
        "tier": "CORE",
        "browser": "/usr/bin/chromium" if engine == "WEBJS" else None,
        "platform": "linux/x64",
        "worker": {"id": None},
    }


def me_info(account: Account) -> Json:
    """`MeInfo` of the session's own account."""
    me: Json = {"id": account.me, "pushName": account.spec.me_push_name}
    if account.engine != "WEBJS":
        me["lid"] = account.spec.me_lid
        me["jid"] = f"{user_part(account.me)}:7@s.whatsapp.net"
    return me


def session_info(account: Account, status: str) -> Json:
    """`SessionInfo` of `GET /api/sessions/{session}`."""
    config: Json = {"debug": False, "webhooks": []}
    if account.engine == "NOWEB":
        config["noweb"] = {"markOnline": True, "store": {"enabled": True, "fullSync": True}}
    return {
        "name": account.waha_session,
        "status": status,
        "config": config,
        "me": me_info(account) if status == "WORKING" else None,
        "presence": None,
        "timestamps": {"activity": int(time.time() * 1000)},
    }


def _content(kind: int, text: str | None, key: str) -> Json:
    """Baileys-style `message` content (GOWS serializes the same proto field names)."""
    if kind == 0:
        if key[-1] in "02468ACE":
            return {"conversation": text}
        return {"extendedTextMessage": {"text": text}}
    mimetype = gen.MEDIA_MIMETYPES[kind]
    body: Json
    if kind == 1:
        body = {"mimetype": mimetype, "height": 1280, "width": 960, "fileLength": 184_233}
        name = "imageMessage"
    elif kind == 2:
        body = {"mimetype": mimetype, "seconds": 14, "fileLength": 2_381_921}
        name = "videoMessage"
    elif kind == 3:
        return {"audioMessage": {"mimetype": mimetype, "seconds": 9, "ptt": True}}
    elif kind == 4:
        body = {"mimetype": mimetype, "fileName": "document.pdf", "pageCount": 3}
        name = "documentMessage"
    else:
        return {"stickerMessage": {"mimetype": mimetype, "isAnimated": False}}
    if text is not None:
        body["caption"] = text
    return {name: body}


class Renderer:
    """Renders an account's rows, chats and contacts in its engine's shapes. Call under `account.lock`."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self.engine = account.engine
        self.me = account.me
        self.me_push = account.spec.me_push_name

    # ------------------------------------------------------------ messages

    def messages(self, rows: np.ndarray, download_media: bool, base_url: str) -> list[Json]:
        """`WAMessage` objects for `rows`, in the given order."""
        if len(rows) == 0:
            return []
        a = self.account
        chat = a.col("chat")[rows]
        cols = (
            chat.tolist(),
            a.col("ts")[rows].tolist(),
            a.col("from_me")[rows].tolist(),
            a.col("sender")[rows].tolist(),
            a.col("body")[rows].tolist(),
            a.col("media")[rows].tolist(),
            a.col("ack")[rows].tolist(),
            a.col("key")[rows].tolist(),
            a.chats.is_group[chat].tolist(),
        )
        render = {"NOWEB": self._noweb, "WEBJS": self._webjs, "GOWS": self._gows}[self.engine]
        chat_ids, pid, push, bodies = a.chats.chat_id, a.people.pid, a.people.push, a.bodies
        partner = a.chats.partner
        out = []
        for c, t, fm, s, b, kind, ack, key_b, grp in zip(*cols, strict=True):
            cid = chat_ids[c]
            key = key_b.decode()
            if grp:
                participant = self.me if fm else pid[s]
                mid = f"{'true' if fm else 'false'}_{cid}_{key}_{participant}"
                sender_push = self.me_push if fm else push[s]
            else:
                participant = None
                mid = f"{'true' if fm else 'false'}_{cid}_{key}"
                sender_push = self.me_push if fm else push[int(partner[c])]
            text = bodies[b] if b >= 0 else None
            ack_v = None if ack == gen.ACK_NULL else ack
            media = None
            if kind and download_media:
                base = key if self.engine != "WEBJS" else mid
                media = {
                    "url": f"{base_url}/api/files/{a.waha_session}/{base}.{gen.MEDIA_EXTENSIONS[kind]}",
                    "mimetype": gen.MEDIA_MIMETYPES[kind],
                    "filename": "document.pdf" if kind == 4 else None,
                    "error": None,
                }
            out.append(render(mid, cid, t, fm, participant, sender_push, text, kind, media, ack_v, key))
        return out

    def _noweb(
        self,
        mid: str,
        cid: str,
        t: int,
        fm: bool,
        participant: str | None,
        push: str | None,
        text: str | None,
        kind: int,
        media: Json | None,
        ack: int | None,
        key: str,
    ) -> Json:
        msg: Json = {
            "id": mid,
            "timestamp": t,
            "from": cid,
            "fromMe": fm,
            "source": "app",
            "body": text or None,
        }
        raw_key: Json = {"remoteJid": to_s_whatsapp_net(cid), "fromMe": fm, "id": key}
        if participant is not None:
            msg["to"] = cid
            msg["participant"] = participant
            raw_key["participant"] = to_s_whatsapp_net(participant)
        msg["hasMedia"] = kind > 0
        msg["media"] = media
        msg["ack"] = ack
        msg["ackName"] = ACK_NAMES[ack]
        msg["location"] = None
        msg["vCards"] = []
        msg["replyTo"] = None
        data: Json = {"key": raw_key, "messageTimestamp": t}
        if push and (not fm or participant is not None):
            data["pushName"] = push
        data["broadcast"] = False
        if ack is not None:
            data["status"] = ack + 1
        data["message"] = _content(kind, text, key)
        msg["_data"] = data
        return msg

    def _webjs(
        self,
        mid: str,
        cid: str,
        t: int,
        fm: bool,
        participant: str | None,
        push: str | None,
        text: str | None,
        kind: int,
        media: Json | None,
        ack: int | None,
        key: str,
    ) -> Json:
        sender = self.me if fm else cid
        to = cid if fm else self.me
        body = text or ""
        msg: Json = {"id": mid, "timestamp": t, "from": sender, "fromMe": fm, "source": "app", "to": to}
        raw_id: Json = {"fromMe": fm, "remote": cid, "id": key, "_serialized": mid}
        if participant is not None:
            msg["participant"] = participant
            raw_id["participant"] = wid(participant)
        msg["body"] = body
        msg["hasMedia"] = kind > 0
        msg["media"] = media
        msg["ack"] = ack
        msg["ackName"] = ACK_NAMES[ack]
        msg["location"] = None
        msg["vCards"] = []
        data: Json = {"id": raw_id, "viewed": False, "body": body, "type": _WEBJS_TYPES[kind], "t": t}
        if not fm and push:
            data["notifyName"] = push
        data["from"] = wid(sender)
        data["to"] = wid(to)
        if participant is not None:
            data["author"] = wid(participant)
        data["ack"] = ack
        data["isNewMsg"] = False
        data["star"] = False
        if kind:
            data["mimetype"] = gen.MEDIA_MIMETYPES[kind]
            if text is not None:
                data["caption"] = text
        data["mentionedJidList"] = []
        data["isForwarded"] = False
        data["hasReaction"] = False
        data["links"] = []
        msg["_data"] = data
        return msg

    def _gows(
        self,
        mid: str,
        cid: str,
        t: int,
        fm: bool,
        participant: str | None,
        push: str | None,
        text: str | None,
        kind: int,
        media: Json | None,
        ack: int | None,
        key: str,
    ) -> Json:
        sender = participant if participant is not None else (self.me if fm else cid)
        info: Json = {
            "Chat": to_s_whatsapp_net(cid),
            "Sender": to_s_whatsapp_net(sender),
            "IsFromMe": fm,
            "IsGroup": participant is not None,
            "ID": key,
            "Type": "media" if kind else "text",
            "PushName": push or "",
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)),
            "MediaType": gen.MEDIA_KINDS[kind],
        }
        return {
            "id": mid,
            "timestamp": t,
            "from": cid,
            "fromMe": fm,
            "source": "app",
            "body": text or None,
            "to": participant,
            "participant": participant,
            "hasMedia": kind > 0,
            "media": media,
            "ack": ack,
            "location": None,
            "vCards": [],
            "ackName": ACK_NAMES[ack],
            "replyTo": None,
            "_data": {"Info": info, "Message": _content(kind, text, key), "Status": (ack or 0) + 1},
        }

    # ------------------------------------------------------------ chats

    def chats(self, chats: list[int]) -> list[Json]:
        """Raw engine chats of `GET /api/{session}/chats` (also the overview's `_chat`)."""
        a = self.account
        if self.engine != "WEBJS":
            return [self._store_chat(c) for c in chats]
        last = self._last_messages(chats)
        return [
            self._webjs_chat(c, a.chat_last_ts(c), int(a.chats.flags[c]), m)
            for c, m in zip(chats, last, strict=True)
        ]

    def chat_summaries(self, chats: list[int]) -> list[Json]:
        """`ChatSummary` items of `/chats/overview`; `lastMessage` rendered with `downloadMedia=false`."""
        a = self.account
        last = self._last_messages(chats)
        raw = (
            [
                self._webjs_chat(c, a.chat_last_ts(c), int(a.chats.flags[c]), m)
                for c, m in zip(chats, last, strict=True)
            ]
            if self.engine == "WEBJS"
            else [self._store_chat(c) for c in chats]
        )
        out = []
        for c, message, chat in zip(chats, last, raw, strict=True):
            picture = None
            if c % 3 == 0:
                picture = (
                    f"https://pps.whatsapp.net/v/t61.24694-24/{1_000_000 + c}_{a.spec.seed}_n.jpg?ccb=11-4"
                )
            out.append(
                {
                    "id": a.chats.chat_id[c],
                    "name": a.chat_name(c),
                    "picture": picture,
                    "lastMessage": message,
                    "_chat": chat,
                }
            )
        return out

    def _last_messages(self, chats: list[int]) -> list[Json | None]:
        a = self.account
        has = [c for c in chats if len(a.chat_rows(c))]
        rows = np.array([a.chat_rows(c)[-1] for c in has], dtype=np.int64)
        rendered = dict(zip(has, self.messages(rows, False, ""), strict=True))
        return [rendered.get(c) for c in chats]

    def _store_chat(self, c: int) -> Json:
        a = self.account
        last_ts = a.chat_last_ts(c)
        flags = int(a.chats.flags[c])
        if self.engine == "GOWS":
            return {"id": a.chats.chat_id[c], "name": a.chat_name(c), "conversationTimestamp": last_ts}
        item: Json = {"id": a.engine_chat_id(c)}
        if a.chats.is_group[c]:
            item["name"] = a.chats.subject[c]
        item.update(
            conversationTimestamp=last_ts,
            readOnly=False,
            ephemeralExpiration=0,
            notSpam=True,
            unreadMentionCount=0,
            archived=bool(flags & 1),
        )
        if flags & 2:
            item["pinned"] = last_ts - 3_600
        if flags & 4:
            item["muteEndTime"] = -1
        return item

    def _webjs_chat(self, c: int, last_ts: int, flags: int, last: Json | None) -> Json:
        a = self.account
        cid = a.chats.chat_id[c]
        group = bool(a.chats.is_group[c])
        item: Json = {
            "id": wid(cid),
            "name": a.chat_name(c) or f"+{user_part(cid)}",
            "isGroup": group,
            "isReadOnly": False,
            "unreadCount": (c * 7) % 4 if c % 3 == 0 else 0,
            "timestamp": last_ts,
            "archived": bool(flags & 1),
            "pinned": bool(flags & 2),
            "isLocked": False,
            "isMuted": bool(flags & 4),
            "muteExpiration": -1 if flags & 4 else 0,
        }
        if last is not None:
            raw = last["_data"]
            key = raw["id"]["id"]
            item["lastMessage"] = {
                "_data": raw,
                "id": raw["id"],
                "ack": last["ack"],
                "hasMedia": last["hasMedia"],
                "body": last["body"],
                "type": raw["type"],
                "timestamp": last["timestamp"],
                "from": last["from"],
                "to": last["to"],
                "deviceType": _DEVICE_TYPES.get(key[:4], _DEVICE_TYPES.get(key[:2], "android")),
                "forwardingScore": 0,
                "isStatus": False,
                "isStarred": False,
                "fromMe": last["fromMe"],
                "hasQuotedMsg": False,
                "hasReaction": False,
                "vCards": [],
                "mentionedIds": [],
                "groupMentions": [],
                "isGif": False,
                "links": [],
            }
        if group:
            created = int(a.chats.created[c])
            members = a.group_members(c).tolist()
            participants = [{"id": wid(self.me), "isAdmin": True, "isSuperAdmin": c % 2 == 0}]
            participants += [
                {"id": wid(a.people.pid[p]), "isAdmin": i == 0, "isSuperAdmin": i == 0 and c % 2 == 1}
                for i, p in enumerate(members)
            ]
            owner = self.me if c % 2 == 0 or not members else a.people.pid[members[0]]
            item["groupMetadata"] = {
                "id": wid(cid),
                "creation": created,
                "owner": wid(owner),
                "subject": a.chats.subject[c],
                "subjectTime": created,
                "desc": "",
                "restrict": False,
                "announce": False,
                "size": len(participants),
                "participants": participants,
            }
        return item

    # ------------------------------------------------------------ contacts

    def contact(self, entry: ContactEntry) -> Json:
        """One contact of `/api/contacts/all`."""
        if self.engine == "GOWS":
            return {"id": entry.contact_id, "name": entry.name, "pushname": entry.push_name}
        business = bool(self.account.people.business[entry.person])
        if self.engine == "NOWEB":
            item: Json = {"id": entry.contact_id}
            if entry.lid:
                item["lid"] = entry.lid
            if entry.name is not None:
                item["name"] = entry.name
            if entry.push_name is not None:
                item["pushname"] = entry.push_name
            if business and entry.push_name:
                item["verifiedName"] = entry.push_name
            return item
        item = {
            "id": entry.contact_id,
            "number": user_part(entry.contact_id),
            "isBusiness": business,
            "isEnterprise": False,
            "labels": [],
        }
        if entry.name is not None:
            item["name"] = entry.name
            item["shortName"] = entry.name.split(" ")[0]
        if entry.push_name is not None:
            item["pushname"] = entry.push_name
        item.update(
            type="in",
            isMe=False,
            isUser=True,
            isGroup=False,
            isWAContact=True,
            isMyContact=entry.name is not None,
            isBlocked=False,
        )
        return item
