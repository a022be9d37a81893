"""Study and trial states and the transitions between them."""

from __future__ import annotations

from enum import StrEnum


class StudyState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    STOPPED = "stopped"

    def accepts_new_trials(self) -> bool:
        return self is StudyState.RUNNING


class TrialState(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAIL = "fail"

    def is_finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset({TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL})

# Which study actions are allowed from which state.
STUDY_TRANSITIONS: dict[str, dict[StudyState, StudyState]] = {
    "pause": {StudyState.RUNNING: StudyState.PAUSED},
    "resume": {StudyState.PAUSED: StudyState.RUNNING},
    "stop": {StudyState.RUNNING: StudyState.STOPPED, StudyState.PAUSED: StudyState.STOPPED},
}
