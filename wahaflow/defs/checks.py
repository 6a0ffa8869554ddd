"""Blocking asset checks: the invariants of design.md §5, computed in SQL inside Postgres.

Each check covers the chunks of the run that materialized the asset (or every chunk when run on its
own) and reports its figures, plus a sample of offending rows, as metadata.
"""

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from wahaflow.defs.partitions import RANGE_END, RANGE_START, chat_chunks
from wahaflow.warehouse import audits
from wahaflow.warehouse.audits import AuditResult
from wahaflow.warehouse.resource import PostgresResource
from wahaflow.warehouse.statistics import wait_for_statistics

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Invariant:
    """One blocking check: the asset it guards, its name, the audit that measures it."""

    asset: str
    name: str
    audit: Callable[..., AuditResult]
    description: str

    @property
    def key(self) -> dg.AssetCheckKey:
        return dg.AssetCheckKey(dg.AssetKey(self.asset), self.name)


INVARIANTS = [
    Invariant(
        "messages",
        "no_duplicate_messages",
        audits.duplicate_messages,
        "No two messages share (waha_session, message_id).",
    ),
    Invariant(
        "messages",
        "every_message_has_a_session",
        audits.messages_without_session,
        "Every message names a session of its own chat.",
    ),
    Invariant(
        "sessions",
        "session_counts_add_up",
        audits.session_counts_mismatch,
        "Per chat, the sessions' message counts add up to the chat's messages.",
    ),
    Invariant(
        "sessions",
        "sessions_do_not_overlap",
        audits.overlapping_sessions,
        "No two sessions of a chat overlap in time.",
    ),
]


def _result(invariant: Invariant, audit: AuditResult, scope: list[str] | None) -> dg.AssetCheckResult:
    metadata: dict[str, object] = {
        "violations": audit.violations,
        **audit.figures,
        "scope": "all chunks" if scope is None else f"{len(scope)} chunk(s)",
    }
    if audit.sample:
        rows = "\n".join("| " + " | ".join(str(v) for v in row) + " |" for row in audit.sample)
        metadata["sample"] = dg.MetadataValue.md(f"Offending rows (first {len(audit.sample)}):\n\n{rows}")
    description = invariant.description
    return dg.AssetCheckResult(
        asset_key=invariant.asset,
        check_name=invariant.name,
        passed=audit.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=description if audit.passed else f"{audit.violations} violation(s): {description}",
    )


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(i.name, asset=i.asset, blocking=True, description=i.description) for i in INVARIANTS
    ],
    name="import_invariants",
    can_subset=True,
)
def import_invariants(
    context: dg.AssetCheckExecutionContext, postgres: PostgresResource
) -> Iterator[dg.AssetCheckResult]:
    """Every selected invariant, in one step (a step per check costs more in Dagster's bookkeeping
    than the audit itself); the audits run at once, each on its own connection, so that Postgres
    spreads them over its cores."""
    scope = run_chunk_keys(context)
    invariants = [i for i in INVARIANTS if i.key in context.selected_asset_check_keys]
    wait_for_statistics(postgres.url(), postgres.db_schema)  # the audits join the run's new rows
    for invariant, audit in zip(invariants, audit_concurrently(postgres, invariants, scope), strict=True):
        yield _result(invariant, audit, scope)


def audit_concurrently(
    postgres: PostgresResource, invariants: Sequence[Invariant], scope: list[str] | None
) -> list[AuditResult]:
    """The audits of `invariants` over `scope`, run concurrently (read-only queries on committed
    rows, each in its own transaction); in the order of `invariants`. The first error is raised."""

    def audit(invariant: Invariant) -> AuditResult:
        with postgres.connect() as conn:
            return invariant.audit(conn, postgres.db_schema, scope)

    with ThreadPoolExecutor(max(1, len(invariants)), thread_name_prefix="wahaflow-audit") as pool:
        return list(pool.map(audit, invariants))


def _compile_check_records() -> None:
    """Have Dagster compile the constructors of its check evaluation records here, before any run.

    Dagster (dagster_shared's `@record`) compiles a record class's constructor on its first call,
    with the calling function's local variables kept as that constructor's globals for good. Both
    records below are first built while a check step runs, with that step's context among the
    locals, and through it every output of its run: the frames of a whole chunk run then stayed in
    memory for the rest of the process (about 100 MB on a 1,000,000 message sync). Built once from
    here, the constructors keep nothing of a run.
    """
    try:
        target = AssetCheckEvaluationTargetMaterializationData(storage_id=0, run_id="", timestamp=0.0)
        dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey("wahaflow"),
            check_name="compile",
            passed=True,
            metadata={},
            target_materialization_data=target,
            severity=dg.AssetCheckSeverity.ERROR,
            description=None,
            blocking=None,
            partition=None,
        )
    except Exception as error:  # another Dagster version: the checks still work, with more memory
        log.warning("could not prepare Dagster's check records (%s): runs may keep more memory", error)


_compile_check_records()

CHECKS = [import_invariants]
