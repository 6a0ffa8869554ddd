"""Deterministic text for the synthetic account: message bodies, people's names, group subjects.

Bodies live in a pool and messages point into it by index, so a million messages cost four bytes
each. The pool mixes plain chat lines with the cases an importer must survive: emoji (astral and
ZWJ sequences), RTL and CJK scripts, combining marks, line/paragraph separators, multi-line text,
embedded NUL characters (`NUL_BODIES`) and WhatsApp's longest texts (`LONG_BODIES`, up to 65,536
characters).
"""

from __future__ import annotations

import random

MAX_TEXT_CHARS = 65_536

_WORDS = (  # noqa: SIM905
    "ok yes no maybe sure thanks tomorrow today tonight meeting call later see you soon "
    "where are we on the release shipping deploy invoice payment price order delivery "
    "address photo video document please check confirm sent received lunch dinner coffee "
    "weekend project update status done waiting for approval budget client ticket support "
    "issue fixed great awesome perfect sorry late traffic running almost there home "
    "office train airport"
).split()

_UNICODE_LINES = (
    "👍",
    "🎉🎉🎉",
    "Great work everyone 🎉",
    "ok 👌",
    "😂😂😂 no way",
    "Family trip 👨‍👩‍👧‍👦 next week",
    "🏳️‍🌈 parade on Saturday",
    "Café à côté, rendez-vous à 10h ☕",
    "¿Dónde estás? Ñandú 🐦",
    "Grüße aus München — Straße gesperrt",
    "Привет! Как дела?",
    "مرحبا، كيف حالك؟",
    "שלום, מה שלומך?",
    "你好，明天见！",
    "今日は雨です ☔",
    "안녕하세요 👋",
    "नमस्ते, आप कैसे हैं?",
    "Zalgo: Z̷̢a̵l̶g̸o̴ ̵t̷e̶x̵t̴",
    "math 𝔸𝕓𝕔 𝟙𝟚𝟛 and music 𝄞",
    "line\u2028separator and paragraph\u2029separator",
    "tab\tseparated\tvalues",
    "quotes \"double\" and 'single' and `back`",
    "backslash \\ and slash / and <html> & entities &amp;",
    "first line\nsecond line\nthird line",
    "\r\nwindows newline\r\n",
    "   leading and trailing spaces   ",
    "emoji skin tones 👋🏻👋🏼👋🏽👋🏾👋🏿",
    "flags 🇧🇷🇩🇪🇯🇵🇺🇸",
)

NUL_BODIES = (
    "NUL in\x00the middle",
    "\x00starts with NUL",
    "ends with NUL\x00",
    "two\x00NULs\x00 and emoji 🎉",
)

_FIRST = (  # noqa: SIM905
    "Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy "
    "Rupert Sybil Trent Victor Walter Zoë José Mária Łukasz Søren Ağa Иван Мария محمد "
    "فاطمة 李雷 韩梅梅 さくら 민준"
).split()
_LAST = (  # noqa: SIM905
    "Smith Jones Brown Taylor Wilson Davies Evans Thomas Johnson Roberts García Müller "
    "Rossi Novak Kowalski Silva Nguyen Kim Chen Ivanova Haddad Cohen O'Brien D'Angelo"
).split()
_SUBJECTS = (  # noqa: SIM905
    "Project Falcon|Family 👨\u200d👩\u200d👧|Book club 📚|Football Sunday ⚽|Office|"
    "Neighbours|Trip to Lisbon ✈️|Class of 2012|Release team|Support escalations|"
    "Wedding planning 💍|Runners 🏃|Landlord & tenants|Devs|Parents — school|Jardín|Группа|"
    "家族|Marketing Q3|Sales EMEA"
).split("|")


def _long_bodies() -> tuple[str, ...]:
    """Three long texts: exactly `MAX_TEXT_CHARS`, a long emoji-heavy one, a long multi-line one."""
    unit = "The quick brown fox jumps over the lazy dog. Ça va? "
    exact = (unit * (MAX_TEXT_CHARS // len(unit) + 1))[:MAX_TEXT_CHARS]
    emoji = ("Долгий текст 🎉👨‍👩‍👧 漢字 " * 2_500)[:40_000]
    lines = "\n".join(f"{i:05d} line of a long pasted log" for i in range(1_800))
    return exact, emoji, lines


LONG_BODIES = _long_bodies()


def body_pool(seed: int, size: int = 1_500) -> tuple[list[str], int, int]:
    """A pool of message bodies: `size` regular ones, then `NUL_BODIES`, then `LONG_BODIES`.

    Returns `(pool, nul_start, long_start)`; regular bodies are `pool[:nul_start]`.
    """
    rnd = random.Random(seed)
    pool: list[str] = []
    for i in range(size):
        if i % 7 == 0:
            pool.append(rnd.choice(_UNICODE_LINES))
            continue
        n = max(1, int(rnd.expovariate(1 / 9)))
        text = " ".join(rnd.choice(_WORDS) for _ in range(n))
        text = text[0].upper() + text[1:]
        if rnd.random() < 0.3:
            text += rnd.choice(("?", "!", ".", " 🙂", " 😅", " 👍", "..."))
        pool.append(text)
    nul_start = len(pool)
    pool.extend(NUL_BODIES)
    long_start = len(pool)
    pool.extend(LONG_BODIES)
    return pool, nul_start, long_start


def person_name(rnd: random.Random) -> str:
    """A saved-contact style name."""
    return f"{rnd.choice(_FIRST)} {rnd.choice(_LAST)}"


def push_name(rnd: random.Random) -> str:
    """A self-chosen WhatsApp display name (often just a first name, sometimes with emoji)."""
    name = rnd.choice(_FIRST)
    roll = rnd.random()
    if roll < 0.15:
        return f"{name} {rnd.choice(('✨', '🌸', '🚀', '⚽', '☕'))}"
    if roll < 0.4:
        return f"{name} {rnd.choice(_LAST)}"
    return name


def group_subject(rnd: random.Random, index: int) -> str:
    """A group subject; an index suffix keeps most subjects distinct."""
    subject = rnd.choice(_SUBJECTS)
    return subject if rnd.random() < 0.3 else f"{subject} {index}"
