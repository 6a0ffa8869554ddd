"""The synthetic account: determinism, preset sizes, realism, ground truth and mutations."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from wahaflow.schemas import CHATS, CONTACTS, MESSAGES
from wahaflow.simulator.account import GROUND_TRUTH_MESSAGE_COLUMNS, Account, AccountSpec
from wahaflow.simulator.generate import HISTORY_END

ID_RE = re.compile(
    r"^(true|false)_(\d+@c\.us|\d+@lid|[\d-]+@g\.us)_([0-9A-F]{16,32})(_(\d+@c\.us|\d+@lid))?$"
)


@pytest.fixture(scope="module")
def seed_account() -> Account:
    return Account(AccountSpec.preset("seed"))


@pytest.fixture(scope="module")
def seed_truth(seed_account: Account) -> pl.DataFrame:
    return seed_account.ground_truth_messages()


def test_same_seed_same_ground_truth_other_seed_differs() -> None:
    a = Account(AccountSpec(seed=7, n_chats=80, n_messages=500))
    b = Account(AccountSpec(seed=7, n_chats=80, n_messages=500))
    c = Account(AccountSpec(seed=8, n_chats=80, n_messages=500))
    assert a.ground_truth_messages().equals(b.ground_truth_messages())
    assert a.ground_truth_chats().equals(b.ground_truth_chats())
    assert a.ground_truth_contacts().equals(b.ground_truth_contacts())
    assert not a.ground_truth_messages().equals(c.ground_truth_messages())
    assert set(a.chats.chat_id).isdisjoint(c.chats.chat_id)


def test_engine_changes_representation_not_the_history() -> None:
    truths = {
        e: Account(AccountSpec(seed=3, engine=e)).ground_truth_messages() for e in ("WEBJS", "NOWEB", "GOWS")
    }
    keys = ["message_id", "chat_id", "sent_at", "from_me", "sender_id", "has_media"]
    assert truths["WEBJS"].select(keys).equals(truths["NOWEB"].select(keys))
    assert truths["GOWS"].select(keys).equals(truths["NOWEB"].select(keys))
    # media without caption: null on NOWEB/GOWS, "" on WEBJS
    assert truths["NOWEB"].filter(pl.col("body").is_null())["has_media"].all()
    assert truths["WEBJS"]["body"].null_count() == 0
    assert (truths["WEBJS"]["body"] == "").sum() == truths["NOWEB"]["body"].null_count()


def test_seed_preset_size_and_schemas(seed_account: Account, seed_truth: pl.DataFrame) -> None:
    assert seed_account.n_chats == 1_172
    assert seed_account.n_messages == 5_700
    assert seed_truth.height == 5_700
    assert seed_truth["message_id"].n_unique() == 5_700
    assert seed_truth.schema == pl.Schema({k: MESSAGES[k] for k in GROUND_TRUTH_MESSAGE_COLUMNS})
    chats = seed_account.ground_truth_chats()
    assert chats.height == 1_172
    assert dict(chats.schema) == {k: CHATS[k] for k in chats.columns}
    assert seed_account.ground_truth_contacts().schema == CONTACTS


def test_big_preset_generates_fast() -> None:
    started = time.perf_counter()
    account = Account(AccountSpec.preset("big"))
    elapsed = time.perf_counter() - started
    assert (account.n_chats, account.n_messages) == (10_000, 50_000)
    assert elapsed < 3.0


def test_heavy_tailed_chats_and_groups(seed_account: Account) -> None:
    sizes = np.array([len(seed_account.chat_rows(c)) for c in range(seed_account.n_chats)])
    assert sizes.min() >= 1
    assert np.median(sizes) <= 3
    assert (sizes <= 5).mean() > 0.8
    assert sizes.max() >= 200
    groups = seed_account.chats.is_group
    assert 0.07 < groups.mean() < 0.13
    lid_members = [
        seed_account.people.pid[p] for c in np.flatnonzero(groups) for p in seed_account.group_members(c)
    ]
    assert any(pid.endswith("@lid") for pid in lid_members)
    assert any(cid.endswith("@lid") for cid in seed_account.chats.chat_id)  # 1:1 chats known only by LID
    assert any("-" in cid for cid in seed_account.chats.chat_id if cid.endswith("@g.us"))  # old-style


def test_realistic_messages(seed_account: Account, seed_truth: pl.DataFrame) -> None:
    t = seed_truth
    assert t["message_id"].str.contains(ID_RE.pattern).all()
    group = t.filter(pl.col("chat_id").str.ends_with("@g.us"))
    assert group["message_id"].str.count_matches("_").min() == 3  # participant suffix on every one
    assert group.filter(~pl.col("from_me"))["sender_id"].str.ends_with("@lid").any()
    assert t["from_me"].any() and (~t["from_me"]).any()
    media = t.filter(pl.col("has_media"))
    assert media["body"].null_count() > 0 and media["body"].drop_nulls().len() > 0
    assert t["ack"].null_count() > 0 and t["ack"].drop_nulls().n_unique() >= 4
    bodies = [seed_account.bodies[b] for b in seed_account.col("body").tolist() if b >= 0]
    assert any("\x00" in b for b in bodies)
    assert not t["body"].drop_nulls().str.contains("\x00", literal=True).any()
    assert max(len(b) for b in bodies) == 65_536
    assert any(any(ord(ch) > 0xFFFF for ch in b) for b in bodies)  # astral emoji
    assert t["sent_at"].max() <= datetime.fromtimestamp(HISTORY_END, UTC)


def test_gaps_include_same_second_and_the_session_threshold(seed_truth: pl.DataFrame) -> None:
    gaps = (
        seed_truth.sort("chat_id", "sent_at")
        .with_columns(gap=pl.col("sent_at").diff().over("chat_id").dt.total_seconds())
        .drop_nulls("gap")["gap"]
    )
    assert (gaps == 0).sum() > 100  # bursts within one second
    assert (gaps == 1_800).sum() > 0  # exactly the 30-minute threshold: same session
    assert (gaps == 1_801).sum() > 0  # one second more: a new session
    assert (gaps > 86_400).sum() > 0  # long silences


def test_ground_truth_rules(seed_account: Account, seed_truth: pl.DataFrame) -> None:
    me = seed_account.me
    assert seed_truth.filter(pl.col("from_me"))["sender_id"].eq(me).all()
    direct = seed_truth.filter(~pl.col("from_me") & ~pl.col("chat_id").str.ends_with("@g.us"))
    assert direct["sender_id"].eq(direct["chat_id"]).all()
    assert not seed_truth["chat_id"].str.contains("s.whatsapp.net").any()
    assert not seed_truth["sender_id"].str.contains("s.whatsapp.net").any()
    group = seed_truth.filter(pl.col("chat_id").str.ends_with("@g.us"))
    suffix = group["message_id"].str.split("_").list.get(3)
    assert suffix.eq(group["sender_id"]).all()
    chats = seed_account.ground_truth_chats()
    last = seed_truth.group_by("chat_id").agg(pl.col("sent_at").max().alias("last"))
    joined = chats.join(last, on="chat_id")
    assert joined["last_message_at"].eq(joined["last"]).all()
    assert chats["is_group"].eq(chats["chat_id"].str.ends_with("@g.us")).all()


def test_noweb_contacts_list_phone_and_lid_entries() -> None:
    noweb = Account(AccountSpec(seed=5, engine="NOWEB")).ground_truth_contacts()
    webjs = Account(AccountSpec(seed=5, engine="WEBJS")).ground_truth_contacts()
    assert noweb["contact_id"].str.ends_with("@lid").sum() > webjs["contact_id"].str.ends_with("@lid").sum()
    assert set(webjs["contact_id"]) <= set(noweb["contact_id"])


def test_add_messages_updates_served_data_and_ground_truth() -> None:
    account = Account(AccountSpec(seed=11))
    before = account.ground_truth_messages()
    chat = account.chats.chat_id[0]
    new = account.add_messages(3, chat_ids=[chat])
    assert new.height == 3 and new["chat_id"].eq(chat).all()
    now = datetime.now(UTC).timestamp()
    assert abs(new["sent_at"].max().timestamp() - now) < 5
    after = account.ground_truth_messages()
    assert after.height == before.height + 3
    assert set(new["message_id"]) <= set(after["message_id"])
    rows = account.chat_rows(0)
    assert account.message_id(int(rows[-1])) in set(new["message_id"])
    late = account.add_messages(1, chat_ids=[chat], at=1_600_000_000)  # planted late, old timestamp
    assert account.message_id(int(account.chat_rows(0)[0])) == late["message_id"][0]
    assert (
        account.ground_truth_chats().filter(pl.col("chat_id") == chat)["last_message_at"][0]
        == new["sent_at"].max()
    )


def test_edit_revoke_ack_and_new_chat() -> None:
    account = Account(AccountSpec(seed=12))
    truth = account.ground_truth_messages()
    first, second, third = truth["message_id"][:3]
    account.edit_message(first, "edited\x00!")
    account.set_ack(second, None)
    account.revoke_message(third)
    after = account.ground_truth_messages()
    assert after.filter(pl.col("message_id") == first)["body"][0] == "edited!"
    assert after.filter(pl.col("message_id") == second)["ack"][0] is None
    assert third not in set(after["message_id"])
    assert third in set(account.ground_truth_messages(include_revoked=True)["message_id"])
    chat_id = account.add_chat(name="Newcomer", messages=2)
    assert account.ground_truth_chats().filter(pl.col("chat_id") == chat_id)["name"][0] == "Newcomer"
    assert account.ground_truth_messages().filter(pl.col("chat_id") == chat_id).height == 2
    with pytest.raises(KeyError):
        account.set_ack("false_1@c.us_NOPE", 3)
