"""Strict inference: the pure decode rules, the adapters and the ONNX Runtime runner."""

from worker.inference.decode import strict_decode
from worker.inference.result import FIELDS, StrictResult
from worker.inference.runner import BundleRunner

__all__ = ["FIELDS", "BundleRunner", "StrictResult", "strict_decode"]
