"""Pure-Python domain types: no web framework, database or optimization library."""

from hposvc.domain.states import StudyState, TrialState

__all__ = ["StudyState", "TrialState"]
