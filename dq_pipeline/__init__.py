"""dq_pipeline: data-quality audits for multi-label datasets (functional core + Dagster shell)."""

__version__ = "0.1.0"
