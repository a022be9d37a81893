"""The only package that imports Optuna: samplers, pruners and the per-study cache."""

from hposvc.samplers.base import AskResult, TrialRecord
from hposvc.samplers.cache import CacheOutOfSync, StudyCache, StudyCaches
from hposvc.samplers.registry import validate_spec

__all__ = [
    "AskResult",
    "CacheOutOfSync",
    "StudyCache",
    "StudyCaches",
    "TrialRecord",
    "validate_spec",
]
