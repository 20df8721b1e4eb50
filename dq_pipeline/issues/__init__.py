"""Issue detectors. Every detector returns a :class:`DetectorResult` (see ``base``)."""

from dq_pipeline.issues.base import DetectorResult

__all__ = ["DetectorResult"]
