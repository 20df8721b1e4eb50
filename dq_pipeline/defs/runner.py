"""Run one audit through Dagster in-process (the same job the UI, sensor and schedule launch)."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from dq_pipeline.defs.partitions import dataset_partitions
from dq_pipeline.defs.resources import AuditSettings
from dq_pipeline.runtime import keep_signal_handlers


@dataclass
class AuditOutcome:
    """What happened: success, the run id, failed gates (with reasons), step errors, curated summary."""

    dataset: str
    success: bool
    run_id: str
    gate_failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    materialized: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)  # steps served from the result cache
    step_seconds: dict[str, float] = field(default_factory=dict)  # step key -> seconds, in execution order

    def reason(self) -> str:
        return "\n".join(self.gate_failures + self.errors) or "unknown failure"


def _hit(metadata: dict) -> bool:
    value = metadata.get("cache_hit")
    return bool(getattr(value, "value", value))


class _UserMessages(logging.Filter):
    """Keeps what the pipeline's own code logs (progress, counts, cache reuse) and drops Dagster's
    framework events and errors, whose failures carry full stack traces (the CLI prints a failed run's
    reason itself); rewrites each kept record as ``step: message``."""

    def filter(self, record: logging.LogRecord) -> bool:
        from dagster._core.log_manager import get_log_record_metadata, has_log_record_metadata

        if not has_log_record_metadata(record):
            return True
        meta = get_log_record_metadata(record)
        if meta.get("dagster_event") is not None or record.levelno >= logging.ERROR:
            return False  # framework events, and its errors ("Dependencies for step ... failed")
        record.msg, record.args = f"  {meta.get('step_key') or 'run'}: {meta['orig_message']}", ()
        return True


@dg.logger(dg.Field({"log_level": dg.Field(str, is_required=False, default_value="INFO")}),
           description="Brief console log: the pipeline's own messages, no Dagster events or tracebacks.")
def brief_console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    """The CLI's default logger: a failed run's reason is printed once, by the CLI, before any detail
    (``--verbose`` gives Dagster's full console log, tracebacks included)."""
    log = logging.Logger("dq_pipeline.audit", level=init_context.logger_config["log_level"])
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_UserMessages())
    log.addHandler(handler)
    return log


def get_instance() -> dg.DagsterInstance:
    """The persistent instance when ``$DAGSTER_HOME`` is set (runs then show in the UI), else ephemeral."""
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def run_audit(
    folder: str | Path,
    db_path: str | None = None,
    settings: AuditSettings | None = None,
    instance: dg.DagsterInstance | None = None,
    log_level: str = "INFO",
    in_memory: bool | None = None,
    verbose: bool = False,
) -> AuditOutcome:
    """Audit the dataset in ``folder`` (partition = folder name) and report the outcome.

    A failed blocking gate stops the downstream assets; its description lands in ``gate_failures``.
    ``in_memory`` hands step outputs over in memory rather than storing them in the instance (so later
    runs could not re-execute single assets from them); default: only when no ``instance`` is given and
    ``$DAGSTER_HOME`` is unset, i.e. the ephemeral instance is discarded after this run anyway.
    ``verbose`` logs every Dagster event with tracebacks; by default only the pipeline's own messages.
    """
    from dq_pipeline.definitions import build_definitions

    folder = Path(folder).resolve()
    name = folder.name
    if in_memory is None:
        in_memory = instance is None and not os.environ.get("DAGSTER_HOME")
    instance = instance or get_instance()
    defs = build_definitions(data_dir=str(folder.parent), db_path=db_path, settings=settings, in_memory=in_memory,
                             loggers=None if verbose else {"console": brief_console_logger})
    if not instance.has_dynamic_partition(dataset_partitions.name, name):
        instance.add_dynamic_partitions(dataset_partitions.name, [name])
    job = defs.resolve_job_def("audit")
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    with keep_signal_handlers():  # Dagster leaves SIGTERM mapped to the SIGINT handler (ignored in a background job)
        result = job.execute_in_process(partition_key=name, instance=instance, raise_on_error=False,
                                        run_config=run_config)
    outcome = AuditOutcome(dataset=name, success=result.success, run_id=result.run_id)
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            outcome.gate_failures.append(f"{evaluation.check_name}: {evaluation.description}")
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        if data.user_failure_data is not None:  # a dg.Failure: a failed gate (already listed) or a refusal
            message = (data.user_failure_data.description or "").strip()
        else:
            error = data.error
            message = (error.message or "").strip() if error else ""
            if error and error.cause:  # a user-code exception: its own message names the file and value
                message = (error.cause.message or message).strip()
            if error and error.cls_name == "DagsterExecutionInterruptedError":
                message = "interrupted: the process received SIGINT (Ctrl-C) or SIGTERM (kill) during this step"
        if not any(message and message in g for g in outcome.gate_failures):
            outcome.errors.append(f"{event.step_key}: {message}")
    outcome.success = result.success and not outcome.gate_failures
    materializations = [e.step_materialization_data.materialization for e in result.get_asset_materialization_events()]
    outcome.materialized = sorted({m.asset_key.to_user_string() for m in materializations})
    reused = [m.asset_key.to_user_string() for m in materializations if _hit(m.metadata)]
    reused += [e.check_name for e in result.get_asset_check_evaluations() if _hit(e.metadata)]
    outcome.reused = sorted(set(reused))
    outcome.step_seconds = step_seconds(instance, result.run_id)
    if "curated" in outcome.materialized:
        outcome.summary = result.output_for_node("curated")
    return outcome


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Seconds each step of run ``run_id`` took (STEP_START to STEP_SUCCESS / STEP_FAILURE in the run's event
    log), in the order the steps started; steps that never finished are left out."""
    started: dict[str, float] = {}
    seconds: dict[str, float] = {}
    ends = (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE)
    kinds = {dg.DagsterEventType.STEP_START, *ends}
    for record in instance.get_records_for_run(run_id, of_type=kinds).records:
        event = record.event_log_entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[event.step_key] = record.timestamp
        elif event.event_type in ends and event.step_key in started:
            seconds[event.step_key] = round(record.timestamp - started[event.step_key], 3)
    return {k: seconds[k] for k in started if k in seconds}
