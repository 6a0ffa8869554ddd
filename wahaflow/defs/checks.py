"""Blocking asset checks: the invariants of design.md §5, computed in SQL inside Postgres.

Each check covers the chunks of the run that materialized the asset (or every chunk when run on its
own) and reports its figures, plus a sample of offending rows, as metadata.
"""

from collections.abc import Callable

import dagster as dg

from wahaflow.defs.partitions import RANGE_END, RANGE_START, chat_chunks
from wahaflow.warehouse import audits
from wahaflow.warehouse.audits import AuditResult
from wahaflow.warehouse.resource import PostgresResource


def run_chunk_keys(context: dg.AssetCheckExecutionContext) -> list[str] | None:
    """The chunk keys of the current run, from its tags; None when it targets no partition."""
    tags = context.run.tags
    if "dagster/partition" in tags:
        return [tags["dagster/partition"]]
    if RANGE_START in tags and RANGE_END in tags:
        keys = context.instance.get_dynamic_partitions(chat_chunks.name)
        start, end = keys.index(tags[RANGE_START]), keys.index(tags[RANGE_END])
        return keys[start : end + 1]
    return None


def _result(audit: AuditResult, scope: list[str] | None, description: str) -> dg.AssetCheckResult:
    metadata: dict[str, object] = {
        "violations": audit.violations,
        **audit.figures,
        "scope": "all chunks" if scope is None else f"{len(scope)} chunk(s)",
    }
    if audit.sample:
        rows = "\n".join("| " + " | ".join(str(v) for v in row) + " |" for row in audit.sample)
        metadata["sample"] = dg.MetadataValue.md(f"Offending rows (first {len(audit.sample)}):\n\n{rows}")
    return dg.AssetCheckResult(
        passed=audit.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=description if audit.passed else f"{audit.violations} violation(s): {description}",
    )


def _check(asset: str, name: str, audit: Callable[..., AuditResult], description: str):
    @dg.asset_check(asset=asset, name=name, blocking=True, description=description)
    def _run(context: dg.AssetCheckExecutionContext, postgres: PostgresResource) -> dg.AssetCheckResult:
        scope = run_chunk_keys(context)
        with postgres.connect() as conn:
            return _result(audit(conn, postgres.db_schema, scope), scope, description)

    return _run


no_duplicate_messages = _check(
    "messages",
    "no_duplicate_messages",
    audits.duplicate_messages,
    "No two messages share (waha_session, message_id).",
)
every_message_has_a_session = _check(
    "messages",
    "every_message_has_a_session",
    audits.messages_without_session,
    "Every message names a session of its own chat.",
)
session_counts_add_up = _check(
    "sessions",
    "session_counts_add_up",
    audits.session_counts_mismatch,
    "Per chat, the sessions' message counts add up to the chat's messages.",
)
sessions_do_not_overlap = _check(
    "sessions",
    "sessions_do_not_overlap",
    audits.overlapping_sessions,
    "No two sessions of a chat overlap in time.",
)

CHECKS = [no_duplicate_messages, every_message_has_a_session, session_counts_add_up, sessions_do_not_overlap]
