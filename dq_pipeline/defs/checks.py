"""Blocking asset checks: Great Expectations gates per dataset partition, and 'nothing lost'."""


import dagster as dg

from dq_pipeline import expectations as gates
from dq_pipeline import store
from dq_pipeline.defs.assets import Features, Predictions, RawDataset
from dq_pipeline.defs.resources import AuditSettings, CuratedStore


def gate_check_result(result: gates.GateResult) -> dg.AssetCheckResult:
    """A GateResult as a blocking check outcome: failing expectation, column and sample ids in metadata."""
    return dg.AssetCheckResult(
        passed=result.success,
        severity=dg.AssetCheckSeverity.ERROR,
        description=result.describe()[:2000],
        metadata={
            "n_expectations": result.n_expectations,
            "n_failed": len(result.failures),
            "failures": dg.MetadataValue.json(result.metadata()["failures"]),
        },
    )


def raw_gate(raw: RawDataset, n_folds: int) -> gates.GateResult:
    m = raw.manifest
    return gates.validate_raw_examples(raw.examples, modality=m.modality, classes=raw.classes, n_folds=n_folds,
                                       dataset_folder=str(m.folder), source=str(m.source))


def features_gate(raw: RawDataset, feats: Features) -> gates.GateResult:
    return gates.validate_features(feats.X, list(raw.examples["example_id"]), source=raw.manifest.name)


def probabilities_gate(raw: RawDataset, preds: Predictions) -> gates.GateResult:
    return gates.validate_probabilities(preds.P, list(raw.examples["example_id"]), raw.classes,
                                        source=raw.manifest.name)


def run_gates(raw: RawDataset, feats: Features, preds: Predictions, n_folds: int) -> list[gates.GateResult]:
    """All three gates on a dataset's current inputs (used by ``curated`` before it writes)."""
    return [raw_gate(raw, n_folds), features_gate(raw, feats), probabilities_gate(raw, preds)]


@dg.asset_check(asset="raw_examples", blocking=True, name="raw_examples_gate")
def raw_examples_gate(raw_examples: RawDataset, settings: AuditSettings) -> dg.AssetCheckResult:
    """GE suite on ingested examples: required columns, unique non-null ids, tags within the declared
    classes, every class used, at least n_folds examples, non-empty texts, image files present and
    inside the dataset folder."""
    return gate_check_result(raw_gate(raw_examples, settings.n_folds))


@dg.asset_check(asset="features", blocking=True, name="features_gate",
                additional_ins={"raw_examples": dg.AssetIn("raw_examples")})
def features_gate_check(features: Features, raw_examples: RawDataset) -> dg.AssetCheckResult:
    """GE suite on the feature matrix: one row per example, every value finite."""
    return gate_check_result(features_gate(raw_examples, features))


@dg.asset_check(asset="oof_probabilities", blocking=True, name="probabilities_gate",
                additional_ins={"raw_examples": dg.AssetIn("raw_examples")})
def probabilities_gate_check(oof_probabilities: Predictions, raw_examples: RawDataset) -> dg.AssetCheckResult:
    """GE suite on out-of-fold probabilities: one per (example, tag), each in [0, 1], none missing."""
    return gate_check_result(probabilities_gate(raw_examples, oof_probabilities))


@dg.asset_check(asset="curated", blocking=True, name="nothing_lost")
def nothing_lost(context: dg.AssetCheckExecutionContext, curated: dict, curated_store: CuratedStore) -> dg.AssetCheckResult:
    """Every input row is curated or quarantined: input rows = examples + quarantined, in DuckDB too."""
    with store.connect(curated_store.path) as con:
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


AUDIT_CHECKS = [raw_examples_gate, features_gate_check, probabilities_gate_check, nothing_lost]
