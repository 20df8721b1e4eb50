"""Blocking asset checks: Great Expectations gates per dataset partition, and 'nothing lost'."""


import time
import warnings
from collections.abc import Callable, Iterator

import dagster as dg

from dq_pipeline import expectations as gates
from dq_pipeline import store
from dq_pipeline.defs.partitions import dataset_partitions
from dq_pipeline.defs.assets import Features, Predictions, RawDataset, cache_metadata, reuse
from dq_pipeline.defs.resources import DUCKDB_POOL, AuditSettings, CuratedStore
from dq_pipeline.progress import throttled


# Checks carry the asset's partitions (each run validates its own dataset's partition only); Dagster
# 1.13 marks partitioned checks as preview.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")


def gate_check_result(result: gates.GateResult, extra: dict | None = None) -> dg.AssetCheckResult:
    """A GateResult as a blocking check outcome: failing expectation, column and sample ids in metadata."""
    return dg.AssetCheckResult(
        passed=result.success,
        severity=dg.AssetCheckSeverity.ERROR,
        description=result.describe()[:2000],
        metadata={
            "n_expectations": result.n_expectations,
            "n_failed": len(result.failures),
            "failures": dg.MetadataValue.json(result.metadata()["failures"]),
            **(extra or {}),
        },
    )


def _checked(
    context: dg.AssetCheckExecutionContext, settings: AuditSettings, gate: str, key_parts: list,
    validate: Callable[[], gates.GateResult],
) -> Iterator[dg.AssetCheckResult]:
    """Run a gate's GE suite, or reuse its verdict on byte-identical inputs validated by the same suite
    code (the result cache; ``cache_hit`` in the check metadata says which).

    Yields the check result (shown on the Checks tab). A failed gate then fails its step with the
    gate's own reason (expectation, column, sample ids), so the run page and the CLI show *why* instead
    of Dagster's generic "1 blocking asset check failed"; downstream steps of the partition do not run.
    """
    started = time.perf_counter()
    result, key, hit = reuse(context, settings, gate, key_parts, validate)
    yield gate_check_result(result, cache_metadata(key, hit, started))
    if not result.success:
        raise dg.Failure(description=result.describe(),
                         metadata={"gate": gate, "failures": dg.MetadataValue.json(result.metadata()["failures"])})


def raw_gate(raw: RawDataset, n_folds: int) -> gates.GateResult:
    m = raw.manifest
    return gates.validate_raw_examples(raw.examples, modality=m.modality, classes=raw.classes, n_folds=n_folds,
                                       dataset_folder=str(m.folder), source=str(m.source))


def features_gate(raw: RawDataset, feats: Features) -> gates.GateResult:
    return gates.validate_features(feats.X, list(raw.examples["example_id"]), source=raw.manifest.name)


def probabilities_gate(raw: RawDataset, preds: Predictions, progress=None) -> gates.GateResult:
    return gates.validate_probabilities(preds.P, list(raw.examples["example_id"]), raw.classes,
                                        source=raw.manifest.name, progress=progress)


def run_gates(
    raw: RawDataset, feats: Features, preds: Predictions, n_folds: int, skip: set[str] | frozenset[str] = frozenset()
) -> list[gates.GateResult]:
    """The three gates on a dataset's current inputs, except those named in ``skip`` (used by
    ``curated`` before it writes, skipping the gates that already passed on these inputs in its run)."""
    todo = {
        "raw_examples_gate": lambda: raw_gate(raw, n_folds),
        "features_gate": lambda: features_gate(raw, feats),
        "probabilities_gate": lambda: probabilities_gate(raw, preds),
    }
    return [run() for name, run in todo.items() if name not in skip]


def gates_passed_in_run(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    """Names of the gate checks that passed in run ``run_id``. Within one run they evaluated the very
    outputs that downstream steps read, so those need not be validated again."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    passed: set[str] = set()
    for record in records:
        event = record.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event else None
        if evaluation is not None and evaluation.passed:
            passed.add(evaluation.check_name)
    return passed


@dg.asset_check(asset="raw_examples", blocking=True, name="raw_examples_gate", partitions_def=dataset_partitions)
def raw_examples_gate(
    context: dg.AssetCheckExecutionContext, raw_examples: RawDataset, settings: AuditSettings
) -> Iterator[dg.AssetCheckResult]:
    """GE suite on ingested examples: required columns, unique non-null ids, tags within the declared
    classes, every class used, at least n_folds examples, non-empty texts, image files present and
    inside the dataset folder."""
    m = raw_examples.manifest
    yield from _checked(context, settings, "raw_examples_gate",
                    [raw_examples.fingerprint, settings.n_folds, str(m.folder), str(m.source)],
                    lambda: raw_gate(raw_examples, settings.n_folds))


@dg.asset_check(asset="features", blocking=True, name="features_gate", partitions_def=dataset_partitions,
                additional_ins={"raw_examples": dg.AssetIn("raw_examples")})
def features_gate_check(
    context: dg.AssetCheckExecutionContext, features: Features, raw_examples: RawDataset, settings: AuditSettings
) -> Iterator[dg.AssetCheckResult]:
    """GE suite on the feature matrix: one row per example, every value finite."""
    yield from _checked(context, settings, "features_gate",
                    [features.fingerprint, raw_examples.fingerprint, raw_examples.manifest.name],
                    lambda: features_gate(raw_examples, features))


@dg.asset_check(asset="oof_probabilities", blocking=True, name="probabilities_gate", partitions_def=dataset_partitions,
                additional_ins={"raw_examples": dg.AssetIn("raw_examples")})
def probabilities_gate_check(
    context: dg.AssetCheckExecutionContext, oof_probabilities: Predictions, raw_examples: RawDataset,
    settings: AuditSettings,
) -> Iterator[dg.AssetCheckResult]:
    """GE suite on out-of-fold probabilities: one per (example, tag), each in [0, 1], none missing."""
    p = oof_probabilities
    yield from _checked(context, settings, "probabilities_gate",
                    [p.fingerprint, raw_examples.fingerprint, raw_examples.manifest.name],
                    lambda: probabilities_gate(raw_examples, p,
                                               throttled(context.log.info, "probabilities gate", "rows")))


@dg.asset_check(asset="curated", blocking=True, name="nothing_lost", partitions_def=dataset_partitions,
                pool=DUCKDB_POOL)
def nothing_lost(context: dg.AssetCheckExecutionContext, curated: dict, curated_store: CuratedStore) -> dg.AssetCheckResult:
    """Every input row is curated or quarantined: input rows = examples + quarantined. The write itself
    enforces this inside its transaction (a violating audit is rolled back and never becomes the
    latest); this check shows the counts as committed to DuckDB."""
    with store.connect(curated_store.path, read_only=True) as con:
        n_examples = con.execute("SELECT count(*) FROM examples WHERE dataset = ? AND run_id = ?",
                                 [curated["dataset"], curated["run_id"]]).fetchone()[0]
        n_quarantined = con.execute("SELECT count(*) FROM quarantine WHERE dataset = ? AND run_id = ?",
                                    [curated["dataset"], curated["run_id"]]).fetchone()[0]
    passed = curated["n_input_rows"] == n_examples + n_quarantined
    return dg.AssetCheckResult(
        passed=passed,
        description=f"{curated['n_input_rows']} input rows = {n_examples} examples + {n_quarantined} quarantined"
        if passed else f"{curated['n_input_rows']} input rows != {n_examples} examples + {n_quarantined} quarantined",
        metadata={"n_input_rows": curated["n_input_rows"], "n_examples": n_examples, "n_quarantined": n_quarantined},
    )


@dg.asset_check(asset="curated", blocking=True, name="regression", partitions_def=dataset_partitions,
                pool=DUCKDB_POOL)
def regression_check(
    context: dg.AssetCheckExecutionContext, curated: dict, curated_store: CuratedStore, settings: AuditSettings
) -> Iterator[dg.AssetCheckResult]:
    """Quality regression against the previous successful audit of the dataset: fails when the health
    score falls by more than ``regression_max_health_drop`` or open issues rise by more than
    ``regression_max_open_increase`` (relative, and at least ``regression_min_open_increase`` examples).
    Severity WARN by default (the run succeeds); ERROR with ``regression_blocking`` (the run fails). Its
    metadata lists the examples with new or reopened issues (audit_changes) that caused it."""
    from dq_pipeline import history
    from dq_pipeline.metadata import markdown_table

    dataset, run_id = curated["dataset"], curated["run_id"]
    current = history.read_run(curated_store.path, dataset, run_id)
    if current is None:
        raise dg.Failure(description=f"audit {run_id} of {dataset} is not in {curated_store.path}")
    previous = history.read_run(curated_store.path, dataset, current.get("previous_run_id"))
    changes = history.read_changes(curated_store.path, dataset, run_id)
    outcome = history.regression(current, previous, changes, settings.regression_thresholds())
    severity = dg.AssetCheckSeverity.ERROR if settings.regression_blocking else dg.AssetCheckSeverity.WARN
    causes = outcome.causes
    yield dg.AssetCheckResult(
        passed=outcome.passed,
        severity=severity,
        description=outcome.description[:2000],
        metadata={
            **{k: v for k, v in outcome.metrics.items() if v is not None and not hasattr(v, "isoformat")},
            "n_causing_examples": int(causes["example_id"].nunique()),
            "causing_example_ids": dg.MetadataValue.json(sorted(causes["example_id"].unique().tolist())[:500]),
            "causes": dg.MetadataValue.md(markdown_table(causes, max_rows=50)),
        },
    )
    if not outcome.passed and settings.regression_blocking:
        raise dg.Failure(description=f"regression: {outcome.description}",
                         metadata={"causing_example_ids": dg.MetadataValue.json(
                             sorted(causes["example_id"].unique().tolist())[:500])})


AUDIT_CHECKS = [raw_examples_gate, features_gate_check, probabilities_gate_check, nothing_lost, regression_check]
