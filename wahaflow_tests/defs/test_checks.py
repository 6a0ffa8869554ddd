"""The blocking asset checks fail on planted defects and pass on a clean import."""

from __future__ import annotations

import dagster as dg

from wahaflow.defs.checks import CHECKS


def checks_run(env) -> dg.ExecuteInProcessResult:
    """A run of only the four checks (over every chunk)."""
    job = dg.define_asset_job("checks_only", selection=dg.AssetSelection.checks(*CHECKS))
    defs = dg.Definitions.merge(env.defs, dg.Definitions(jobs=[job]))
    return defs.resolve_job_def("checks_only").execute_in_process(instance=env.instance, raise_on_error=False)


def run_checks(env) -> dict[str, dg.AssetCheckEvaluation]:
    """Run only the four checks (over every chunk) and return their evaluations by name."""
    return {e.check_name: e for e in checks_run(env).get_asset_check_evaluations()}


def test_checks_pass_on_a_clean_import_and_report_figures(sync_env_factory):
    env = sync_env_factory(chats=30, messages=300)
    assert env.sync().ok
    evaluations = run_checks(env)
    assert set(evaluations) == {
        "no_duplicate_messages",
        "every_message_has_a_session",
        "session_counts_add_up",
        "sessions_do_not_overlap",
    }
    assert all(e.passed for e in evaluations.values())
    assert evaluations["no_duplicate_messages"].metadata["messages"].value == 300
    assert evaluations["no_duplicate_messages"].metadata["violations"].value == 0
    # The figures beside each verdict come from the same pass over the rows as the verdict.
    sessions = env.table("sessions", "1")
    chats = env.table("messages", "1").select("waha_session", "chat_id").unique().height
    figures = {name: {k: v.value for k, v in e.metadata.items()} for name, e in evaluations.items()}
    assert figures["every_message_has_a_session"]["messages"] == 300
    assert figures["every_message_has_a_session"]["sessions"] == sessions.height
    assert figures["session_counts_add_up"]["chats"] == chats
    assert figures["session_counts_add_up"]["inconsistent_totals"] == 0
    assert figures["sessions_do_not_overlap"]["sessions"] == sessions.height


def test_checks_fail_on_a_planted_duplicate(sync_env_factory):
    env = sync_env_factory(chats=30, messages=300)
    assert env.sync().ok
    # The primary key forbids duplicates; drop it to plant one, as a broken loader could.
    env.execute("ALTER TABLE messages DROP CONSTRAINT messages_pkey")
    env.execute("INSERT INTO messages SELECT * FROM messages ORDER BY message_id LIMIT 1")
    evaluations = run_checks(env)
    duplicates = evaluations["no_duplicate_messages"]
    assert not duplicates.passed
    assert duplicates.metadata["violations"].value == 1
    assert "sample" in duplicates.metadata
    assert not evaluations["session_counts_add_up"].passed  # the chat now has one message too many


def test_checks_fail_on_a_message_without_session(sync_env_factory):
    env = sync_env_factory(chats=30, messages=300)
    assert env.sync().ok
    env.execute(
        "UPDATE messages SET session_id = 'no-such-session' WHERE message_id = "
        "(SELECT min(message_id) FROM messages)"
    )
    evaluations = run_checks(env)
    assert not evaluations["every_message_has_a_session"].passed
    assert evaluations["every_message_has_a_session"].metadata["violations"].value == 1
    assert evaluations["no_duplicate_messages"].passed


def test_checks_fail_on_overlapping_sessions(sync_env_factory):
    env = sync_env_factory(chats=30, messages=300)
    assert env.sync().ok
    (chat,) = env.execute(
        "SELECT chat_id FROM sessions GROUP BY chat_id HAVING count(*) > 1 ORDER BY chat_id LIMIT 1"
    )[0]
    env.execute(
        f"UPDATE sessions SET ended_at = ended_at + interval '100 days' WHERE chat_id = '{chat}' "
        f"AND started_at = (SELECT min(started_at) FROM sessions WHERE chat_id = '{chat}')"
    )
    result = checks_run(env)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not evaluations["sessions_do_not_overlap"].passed
    assert evaluations["session_counts_add_up"].passed  # the others still ran and passed
    assert not result.success  # the checks are blocking: a failed one fails its run


def test_an_audit_that_cannot_run_fails_the_checks_step(sync_env_factory):
    """The audits run concurrently; one that errors fails the step (no verdict is made up)."""
    env = sync_env_factory(chats=30, messages=300)
    assert env.sync().ok
    env.execute("ALTER TABLE sessions RENAME TO sessions_elsewhere")
    result = checks_run(env)
    assert not result.success
    assert result.get_asset_check_evaluations() == []
    (failure,) = result.get_step_failure_events()
    assert "sessions" in str(failure.step_failure_data.error)
