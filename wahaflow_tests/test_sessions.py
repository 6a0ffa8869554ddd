"""The session rule (design.md §5 rules 3-5, 10): the vectorized pass against a naive loop, and examples."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime
from unittest import mock

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wahaflow import sessions as sessions_module
from wahaflow.schemas import MESSAGES, SESSIONS, conform
from wahaflow.sessions import derive_sessions, merge_messages, rederive_window_start

GAP = 1800
T0 = 1_700_000_000
WS = "default"


def derive_sessions_reference(messages: pl.DataFrame, gap_seconds: int) -> tuple[dict, list[dict]]:
    """The rule as a plain loop: ({(waha_session, message_id): session_id}, [session rows])."""
    chats: dict[tuple[str, str], list[dict]] = {}
    for row in messages.iter_rows(named=True):
        chats.setdefault((row["waha_session"], row["chat_id"]), []).append(row)
    session_of: dict[tuple[str, str], str] = {}
    sessions: list[dict] = []
    for (ws, chat), rows in chats.items():
        rows.sort(key=lambda r: (r["sent_at"], r["message_id"]))
        current = None
        previous = None
        for row in rows:
            if current is None or (row["sent_at"] - previous).total_seconds() > gap_seconds:
                first = row["message_id"]
                current = {
                    "waha_session": ws,
                    "session_id": hashlib.md5(f"{ws}|{chat}|{first}".encode()).hexdigest(),
                    "chat_id": chat,
                    "started_at": row["sent_at"],
                    "ended_at": row["sent_at"],
                    "message_count": 0,
                    "inbound_count": 0,
                    "outbound_count": 0,
                    "chunk_key": row.get("chunk_key"),
                }
                sessions.append(current)
            current["ended_at"] = row["sent_at"]
            current["message_count"] += 1
            current["outbound_count" if row["from_me"] else "inbound_count"] += 1
            session_of[(ws, row["message_id"])] = current["session_id"]
            previous = row["sent_at"]
    return session_of, sessions


def frame(rows: list[tuple]) -> pl.DataFrame:
    """MESSAGES rows from (chat_id, unix seconds, message_id[, from_me[, waha_session]]) tuples."""
    if not rows:
        return pl.DataFrame(schema=MESSAGES)
    records = []
    for row in rows:
        chat, ts, mid, *rest = row
        from_me = rest[0] if rest else False
        ws = rest[1] if len(rest) > 1 else WS
        records.append(
            {
                "waha_session": ws,
                "message_id": mid,
                "chat_id": chat,
                "sent_at": datetime.fromtimestamp(ts, UTC),
                "from_me": from_me,
                "chunk_key": f"chunk-{chat[:1]}",
            }
        )
    return conform(pl.DataFrame(records, schema_overrides={"sent_at": pl.Datetime("us", "UTC")}), MESSAGES)


def md5_id(chat: str, first_message_id: str, ws: str = WS) -> str:
    return hashlib.md5(f"{ws}|{chat}|{first_message_id}".encode()).hexdigest()


def session_map(messages: pl.DataFrame) -> dict[tuple[str, str], str]:
    return {
        (r[0], r[1]): r[2] for r in messages.select("waha_session", "message_id", "session_id").iter_rows()
    }


def session_rows(sessions: pl.DataFrame) -> list[dict]:
    return sorted(sessions.iter_rows(named=True), key=lambda r: (r["waha_session"], r["session_id"]))


def assert_matches_reference(messages: pl.DataFrame, gap_seconds: int) -> None:
    got_messages, got_sessions = derive_sessions(messages, gap_seconds)
    want_map, want_sessions = derive_sessions_reference(messages, gap_seconds)
    assert got_sessions.schema == SESSIONS
    assert got_messages.columns == messages.columns
    assert got_messages.drop("session_id").equals(messages.drop("session_id"))  # same rows, same order
    assert session_map(got_messages) == want_map
    assert session_rows(got_sessions) == sorted(
        want_sessions, key=lambda r: (r["waha_session"], r["session_id"])
    )


# -- property: the vectorized rule equals the loop --------------------------------------------------

# Gaps that sit on the threshold and around it, ties (0), and a few others.
_DELTAS = st.sampled_from([0, 0, 0, 1, GAP - 1, GAP, GAP + 1, 2 * GAP, 7, 86_400])
_CHATS = ["111@c.us", "222@c.us", "120363000@g.us"]


@st.composite
def message_frames(draw) -> pl.DataFrame:
    n = draw(st.integers(0, 40))
    # Unique ids whose text order is unrelated to time ("10" < "9"): ties are broken by it.
    ids = draw(st.lists(st.integers(0, 10_000), min_size=n, max_size=n, unique=True))
    clock: dict[tuple[str, str], int] = {}
    rows = []
    for i in range(n):
        ws = draw(st.sampled_from([WS, WS, "other"]))
        chat = draw(st.sampled_from(_CHATS))
        clock[(ws, chat)] = clock.get((ws, chat), T0 + draw(st.integers(0, 3 * GAP))) + draw(_DELTAS)
        rows.append((chat, clock[(ws, chat)], f"m{ids[i]}", draw(st.booleans()), ws))
    rows = draw(st.permutations(rows))
    return frame(rows)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=message_frames(), gap=st.sampled_from([0, 1, GAP]))
def test_vectorized_rule_equals_the_loop(messages: pl.DataFrame, gap: int) -> None:
    assert_matches_reference(messages, gap)
    # With a 1-bit chat hash most chats collide: the exact multi-column sort takes over, and agrees.
    with mock.patch.object(sessions_module, "_MAX_HASH_BITS", 1):
        assert_matches_reference(messages, gap)


# -- examples ---------------------------------------------------------------------------------------


def test_gap_of_exactly_the_threshold_stays_in_the_session() -> None:
    _, sessions = derive_sessions(frame([("a@c.us", T0, "m1"), ("a@c.us", T0 + GAP, "m2")]), GAP)
    assert sessions.height == 1
    assert sessions.row(0, named=True)["message_count"] == 2


def test_gap_one_second_over_the_threshold_splits() -> None:
    messages, sessions = derive_sessions(frame([("a@c.us", T0, "m1"), ("a@c.us", T0 + GAP + 1, "m2")]), GAP)
    assert sessions.height == 2
    assert session_map(messages) == {(WS, "m1"): md5_id("a@c.us", "m1"), (WS, "m2"): md5_id("a@c.us", "m2")}


def test_same_second_ties_are_ordered_by_message_id() -> None:
    rows = [
        ("a@c.us", T0, "m9"),
        ("a@c.us", T0, "m10"),  # "m10" < "m9" as text: the first message of the first session
        ("a@c.us", T0 + 5000, "zz"),
        ("a@c.us", T0 + 5000, "aa"),  # the first of the second session
        ("a@c.us", T0 + 5001, "0"),  # later, so not first despite the smallest id
    ]
    _, sessions = derive_sessions(frame(rows), GAP)
    assert {r["session_id"] for r in sessions.iter_rows(named=True)} == {
        md5_id("a@c.us", "m10"),
        md5_id("a@c.us", "aa"),
    }


def test_session_id_is_the_md5_of_session_chat_and_first_message() -> None:
    _, sessions = derive_sessions(frame([("a@c.us", T0, "true_a@c.us_3EB0")]), GAP)
    # md5("default|a@c.us|true_a@c.us_3EB0"), as Python's hashlib and Postgres' md5() give it.
    assert sessions["session_id"].to_list() == ["627bfae2ee08c09b66d1cf2e3a1979ae"]


def test_ids_are_the_same_whatever_the_input_order() -> None:
    rng = random.Random(5)
    rows = [
        (rng.choice(_CHATS), T0 + rng.choice([0, 60, 2000, 4000, 9000]), f"id{i}", rng.random() < 0.5)
        for i in range(300)
    ]
    first_messages, first_sessions = derive_sessions(frame(rows), GAP)
    for _ in range(5):
        rng.shuffle(rows)
        messages, sessions = derive_sessions(frame(rows), GAP)
        assert session_map(messages) == session_map(first_messages)
        assert session_rows(sessions) == session_rows(first_sessions)


def test_late_message_bridging_two_sessions_merges_them() -> None:
    stored_messages, stored_sessions = derive_sessions(
        frame([("a@c.us", T0, "m1"), ("a@c.us", T0 + 3000, "m2")]), GAP
    )
    assert stored_sessions.height == 2
    late = frame([("a@c.us", T0 + 1500, "late")])
    messages, sessions = derive_sessions(merge_messages(stored_messages, late), GAP)
    assert sessions.height == 1
    session = sessions.row(0, named=True)
    assert session["session_id"] == md5_id("a@c.us", "m1")  # the first session's id survives
    assert session["message_count"] == 3
    assert set(messages["session_id"]) == {md5_id("a@c.us", "m1")}


def test_late_message_before_the_first_extends_the_session_and_takes_its_id() -> None:
    stored_messages, _ = derive_sessions(frame([("a@c.us", T0, "m1"), ("a@c.us", T0 + 100, "m2")]), GAP)
    _, sessions = derive_sessions(merge_messages(stored_messages, frame([("a@c.us", T0 - 60, "early")])), GAP)
    assert sessions["session_id"].to_list() == [md5_id("a@c.us", "early")]
    assert sessions["started_at"][0] == datetime.fromtimestamp(T0 - 60, UTC)


def test_counts_add_up_per_chat() -> None:
    rng = random.Random(11)
    rows = [
        (rng.choice(_CHATS), T0 + rng.randrange(0, 50_000, 7), f"x{i}", rng.random() < 0.4)
        for i in range(500)
    ]
    messages, sessions = derive_sessions(frame(rows), GAP)
    per_chat_messages = messages.group_by("waha_session", "chat_id").len().sort("chat_id")
    per_chat_sessions = (
        sessions.group_by("waha_session", "chat_id")
        .agg(pl.col("message_count").sum().cast(pl.UInt32).alias("len"))
        .sort("chat_id")
    )
    assert per_chat_sessions.equals(per_chat_messages)
    assert (sessions["inbound_count"] + sessions["outbound_count"] == sessions["message_count"]).all()
    assert sessions["outbound_count"].sum() == messages["from_me"].sum()
    assert (sessions["started_at"] <= sessions["ended_at"]).all()


def test_every_message_belongs_to_a_session_of_its_own_chat() -> None:
    rows = [(chat, T0 + i * 600, f"{chat}-{i}") for chat in _CHATS for i in range(20)]
    rows += [("111@c.us", T0, "same-account-other", False, "other")]  # same chat id, other account
    messages, sessions = derive_sessions(frame(rows), GAP)
    joined = messages.join(sessions, on=["waha_session", "session_id"], how="left", suffix="_s")
    assert joined["chat_id_s"].null_count() == 0
    assert (joined["chat_id"] == joined["chat_id_s"]).all()
    assert sessions.select("waha_session", "session_id").is_unique().all()
    assert sessions.filter(pl.col("waha_session") == "other")["message_count"].to_list() == [1]


def test_empty_frame_and_single_message() -> None:
    messages, sessions = derive_sessions(pl.DataFrame(schema=MESSAGES), GAP)
    assert messages.schema == MESSAGES and messages.is_empty()
    assert sessions.schema == SESSIONS and sessions.is_empty()

    messages, sessions = derive_sessions(frame([("a@c.us", T0, "only", True)]), GAP)
    assert messages.schema == MESSAGES
    assert session_map(messages) == {(WS, "only"): md5_id("a@c.us", "only")}
    row = sessions.row(0, named=True)
    assert (row["message_count"], row["inbound_count"], row["outbound_count"]) == (1, 0, 1)
    assert row["started_at"] == row["ended_at"] == datetime.fromtimestamp(T0, UTC)
    assert row["chunk_key"] == "chunk-a"


def test_hash_collisions_fall_back_to_the_exact_sort() -> None:
    messages = frame([(chat, T0 + i, f"{chat}{i}") for chat in _CHATS for i in range(5)])
    spy = mock.Mock(wraps=sessions_module._order_by_sort)
    with (
        mock.patch.object(sessions_module, "_MAX_HASH_BITS", 1),
        mock.patch.object(sessions_module, "_order_by_sort", spy),
    ):
        _, sessions = derive_sessions(messages, GAP)
    assert spy.called
    assert sessions.height == 3


def test_rejects_nulls_in_keys_and_negative_gap() -> None:
    messages = frame([("a@c.us", T0, "m1")])
    with pytest.raises(ValueError, match="chat_id"):
        derive_sessions(messages.with_columns(chat_id=pl.lit(None, pl.String)), GAP)
    with pytest.raises(ValueError, match="gap_seconds"):
        derive_sessions(messages, -1)


def test_rederive_window_starts_at_the_last_session_minus_the_gap() -> None:
    _, sessions = derive_sessions(
        frame([("a@c.us", T0, "m1"), ("a@c.us", T0 + 10_000, "m2"), ("b@c.us", T0 + 5, "m3")]), GAP
    )
    window = rederive_window_start(sessions, GAP)
    assert window.to_dicts() == [
        {"waha_session": WS, "chat_id": "a@c.us", "fetch_from": T0 + 10_000 - GAP},
        {"waha_session": WS, "chat_id": "b@c.us", "fetch_from": T0 + 5 - GAP},
    ]


def test_merge_messages_keeps_the_fetched_version() -> None:
    stored = frame([("a@c.us", T0, "m1"), ("a@c.us", T0 + 10, "m2")])
    fetched = frame([("a@c.us", T0 + 10, "m2", True), ("a@c.us", T0 + 20, "m3")])
    merged = merge_messages(stored, fetched)
    assert merged.sort("message_id")["message_id"].to_list() == ["m1", "m2", "m3"]
    assert merged.filter(pl.col("message_id") == "m2")["from_me"].to_list() == [True]


def test_incremental_rederivation_equals_deriving_everything_at_once() -> None:
    rng = random.Random(3)
    history = [
        ("a@c.us", T0 + i * rng.choice([0, 300, 2500]), f"h{i}", rng.random() < 0.5) for i in range(60)
    ]
    stored_messages, stored_sessions = derive_sessions(frame(history), GAP)
    last_start = int(stored_sessions["started_at"].max().timestamp())
    # Late arrivals: inside the last session, in the gap before it, and a new one after it.
    late = [("a@c.us", last_start - GAP + 1, "late1"), ("a@c.us", last_start + 1, "late2")]
    late += [("a@c.us", last_start + 10 * GAP, "late3", True)]
    (fetch_from,) = rederive_window_start(stored_sessions, GAP)["fetch_from"]
    fetched = frame(history + late).filter(pl.col("sent_at").dt.epoch("s") >= fetch_from)
    assert fetched.height > len(late)  # the window re-reads stored messages too
    messages, sessions = derive_sessions(merge_messages(stored_messages, fetched), GAP)
    want_messages, want_sessions = derive_sessions(frame(history + late), GAP)
    assert session_map(messages) == session_map(want_messages)
    assert session_rows(sessions) == session_rows(want_sessions)
