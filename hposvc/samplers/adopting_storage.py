"""An Optuna ``InMemoryStorage`` that takes trials as they are handed to it.

``InMemoryStorage.create_new_trial`` deep-copies its template trial, which is most of what it
costs to load a study of thousands of trials into memory (a study cache being built, a chart's
study). A trial built for the storage alone needs no copy: ``adopt_trial`` keeps it.
"""

from __future__ import annotations

from optuna.storages import InMemoryStorage
from optuna.trial import FrozenTrial


class AdoptingStorage(InMemoryStorage):
    """``InMemoryStorage`` plus ``adopt_trial``; everything else is Optuna's."""

    def adopt_trial(self, study_id: int, trial: FrozenTrial) -> int:
        """Add ``trial`` itself to the study, as ``create_new_trial`` adds a copy of a template.

        The caller hands the trial over: the storage changes it from now on (its trial id is
        set here), and nothing else may. The trial keeps its number, which is its position in
        the study unless the caller loads a subset of another study's trials (a chart's
        sample); the storage finds trials by id and position, never by number.

        Returns:
            The trial's id in this storage.
        """
        with self._lock:
            self._check_study_id(study_id)
            trials = self._studies[study_id].trials
            self._max_trial_id += 1
            trial._trial_id = self._max_trial_id
            self._trial_id_to_study_id_and_number[trial._trial_id] = (study_id, len(trials))
            trials.append(trial)
            self._update_cache(trial._trial_id, study_id)
            return trial._trial_id
