"""AdoptingStorage: trials it adopts make the same study as Optuna's own copies of them."""

from __future__ import annotations

import copy

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from hposvc.samplers.adopting_storage import AdoptingStorage


def _trials() -> list[FrozenTrial]:
    x = FloatDistribution(0.0, 1.0)
    made = [
        create_trial(
            state=TrialState.COMPLETE, params={"x": 0.5}, distributions={"x": x}, value=3.0
        ),
        create_trial(
            state=TrialState.PRUNED,
            params={"x": 0.1},
            distributions={"x": x},
            intermediate_values={1: 9.0, 2: 8.0},
        ),
        create_trial(
            state=TrialState.COMPLETE, params={"x": 0.2}, distributions={"x": x}, value=1.0
        ),
        create_trial(state=TrialState.RUNNING, params={"x": 0.3}, distributions={"x": x}),
        create_trial(state=TrialState.WAITING, system_attrs={"fixed_params": {"x": 0.4}}),
        create_trial(
            state=TrialState.COMPLETE, params={"x": 0.9}, distributions={"x": x}, value=2.0
        ),
    ]
    for number, trial in enumerate(made):
        trial.number = number
    return made


def test_adopted_trials_make_the_study_optuna_makes_of_copies() -> None:
    optunas, adopting = optuna.storages.InMemoryStorage(), AdoptingStorage()
    ours = _trials()
    theirs = copy.deepcopy(ours)  # create_trial stamps each trial's start: the same trials
    a = optunas.create_new_study(directions=[optuna.study.StudyDirection.MINIMIZE])
    b = adopting.create_new_study(directions=[optuna.study.StudyDirection.MINIMIZE])
    ids_a = [optunas.create_new_trial(a, template_trial=t) for t in theirs]
    ids_b = [adopting.adopt_trial(b, t) for t in ours]
    assert ids_a == ids_b
    assert adopting.get_all_trials(b) == optunas.get_all_trials(a)
    assert adopting.get_best_trial(b).number == optunas.get_best_trial(a).number == 2
    for number, trial_id in enumerate(ids_b):
        assert adopting.get_trial_id_from_study_id_trial_number(b, number) == trial_id
    assert all(  # the very trials handed over, not copies
        got is trial for got, trial in zip(adopting.get_all_trials(b, False), ours, strict=True)
    )
    waiting = adopting.get_all_trials(b, deepcopy=False, states=(TrialState.WAITING,))
    assert [t.number for t in waiting] == [4]


def test_an_adopted_trial_changes_as_optunas_would() -> None:
    optunas, adopting = optuna.storages.InMemoryStorage(), AdoptingStorage()
    a = optunas.create_new_study(directions=[optuna.study.StudyDirection.MINIMIZE])
    b = adopting.create_new_study(directions=[optuna.study.StudyDirection.MINIMIZE])
    ours = _trials()
    for t in copy.deepcopy(ours):
        optunas.create_new_trial(a, template_trial=t)
    for t in ours:
        adopting.adopt_trial(b, t)
    for storage, study in ((optunas, a), (adopting, b)):
        running = storage.get_trial_id_from_study_id_trial_number(study, 3)
        storage.set_trial_intermediate_value(running, 1, 0.25)
        storage.set_trial_state_values(running, TrialState.COMPLETE, [0.5])

    def seen(trial: FrozenTrial) -> tuple:  # all but the time it completed, stamped by each
        return trial.number, trial.state, trial.values, trial.params, trial.intermediate_values

    assert [seen(t) for t in adopting.get_all_trials(b)] == [
        seen(t) for t in optunas.get_all_trials(a)
    ]
    assert adopting.get_best_trial(b).number == 3
    assert ours[3].state == TrialState.RUNNING  # Optuna replaces a trial it changes
