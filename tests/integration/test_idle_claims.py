"""Claims with nothing to hand out are answered from one read, without a decision, and only
when nothing else could be true: every case where the decision would hand out a trial or
write something still goes to it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from hposvc.db.base import utcnow
from hposvc.db.models import Study, Trial
from hposvc.db.session import Database
from hposvc.domain.states import StudyState, TrialState
from hposvc.errors import NotFoundError
from hposvc.samplers import StudyCaches
from hposvc.schemas.studies import EnqueueRequest, StudySpec
from hposvc.schemas.trials import ClaimedTrial, CompleteRequest
from hposvc.schemas.workers import WorkerRegister
from hposvc.services import studies, trials, workers
from tests.factories import make_spec


@dataclass
class Service:
    db: Database
    caches: StudyCaches
    decided: list[str | None]  # the study named by each claim that went to a decision

    def register(self, name: str) -> int:
        return workers.register(db=self.db, body=WorkerRegister(name=name, host="h"))

    def create(self, name: str = "study", **overrides: Any) -> None:
        spec = StudySpec.model_validate(make_spec(name=name, **overrides))
        studies.create_study(db=self.db, spec=spec)

    def claim(
        self, worker: int, study: str | None = None, request_id: str | None = None
    ) -> ClaimedTrial | None:
        return trials.claim(
            db=self.db,
            caches=self.caches,
            worker_id=worker,
            study_name=study,
            request_id=request_id,
        )

    def complete(self, trial: ClaimedTrial, worker: int) -> None:
        body = CompleteRequest(worker_id=worker, values=[1.0])
        trials.complete(db=self.db, caches=self.caches, trial_id=trial.id, body=body)

    def rows(self) -> list[tuple[Any, ...]]:
        """Every study's and trial's row as stored: a claim that writes nothing leaves them."""
        with self.db.session() as session:
            found = [
                tuple(getattr(s, c) for c in ("id", "state", "seq", "n_trials", "updated_at"))
                for s in session.scalars(select(Study).order_by(Study.id))
            ]
            found += [
                tuple(getattr(t, c) for c in ("id", "state", "seq", "lease_expires_at"))
                for t in session.scalars(select(Trial).order_by(Trial.id))
            ]
            return found


@pytest.fixture
def service(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    decided: list[str | None] = []
    real = trials._claim

    def spied(db: Database, caches: StudyCaches, **keys: Any) -> ClaimedTrial | None:
        decided.append(keys["study_name"])
        return real(db, caches, **keys)

    monkeypatch.setattr(trials, "_claim", spied)
    db = Database(database_url)
    yield Service(db, StudyCaches(), decided)
    db.dispose()


def _spend(service: Service, budget: int, **overrides: Any) -> tuple[list[int], list[Any]]:
    """A study whose ``budget`` trials are all claimed and running, one per worker."""
    service.create(budget={"max_trials": budget, "lease_seconds": 60}, **overrides)
    runners = [service.register(f"runner-{i}") for i in range(budget)]
    held = [service.claim(w) for w in runners]
    assert all(t is not None for t in held)
    return runners, held


@pytest.mark.parametrize("named", [None, "study"])
def test_claims_on_a_spent_study_are_answered_without_a_decision(
    service: Service, named: str | None
) -> None:
    _spend(service, 2)
    idle = service.register("idle")
    assert service.claim(idle, named) is None  # decided: there was nothing, nothing proven yet
    assert service.decided[-1] == named
    before, decisions = service.rows(), len(service.decided)
    for _ in range(3):
        assert service.claim(idle, named, request_id="poll") is None
    assert len(service.decided) == decisions
    assert service.rows() == before


def test_a_trial_whose_lease_ran_out_is_handed_out_again(service: Service) -> None:
    _, held = _spend(service, 1)  # make_spec's budget allows a retry
    idle = service.register("idle")
    assert service.claim(idle) is None
    with service.db.session(write=True) as session:
        session.get(Trial, held[0].id).lease_expires_at = utcnow() - timedelta(seconds=1)
    retry = service.claim(idle)
    assert retry is not None and retry.retry_of == held[0].id


def test_an_enqueued_trial_is_handed_out(service: Service) -> None:
    _spend(service, 1)
    idle = service.register("idle")
    assert service.claim(idle) is None
    body = EnqueueRequest(params={"x": 1.0, "n": 2, "opt": "adam"})
    studies.enqueue_trial(db=service.db, caches=service.caches, name="study", body=body)
    enqueued = service.claim(idle)
    assert enqueued is not None and enqueued.params["x"] == 1.0


def test_the_claim_after_the_last_trial_ends_completes_the_study(service: Service) -> None:
    runners, held = _spend(service, 1)
    idle = service.register("idle")
    assert service.claim(idle) is None
    service.complete(held[0], runners[0])
    decisions = len(service.decided)
    assert service.claim(idle, "study") is None
    assert len(service.decided) == decisions + 1  # a spent study with nothing running: a write
    with service.db.session() as session:
        state = session.scalars(select(Study.state).where(Study.name == "study")).one()
    assert state == StudyState.COMPLETED.value


def test_a_study_at_its_cap_of_concurrent_trials_hands_out_once_one_ends(
    service: Service,
) -> None:
    service.create(budget={"max_trials": 10, "max_concurrent": 1, "lease_seconds": 60})
    runner, idle = service.register("runner"), service.register("idle")
    first = service.claim(runner)
    assert first is not None
    assert service.claim(idle) is None
    decisions = len(service.decided)
    assert service.claim(idle) is None
    assert len(service.decided) == decisions
    service.complete(first, runner)
    assert service.claim(idle) is not None


def test_a_new_study_is_claimed_from(service: Service) -> None:
    _spend(service, 1)
    idle = service.register("idle")
    assert service.claim(idle) is None
    service.create(name="second")
    claimed = service.claim(idle)
    assert claimed is not None and claimed.study == "second"


def test_a_resumed_study_is_claimed_from(service: Service) -> None:
    service.create()
    idle = service.register("idle")
    studies.act_on_study(db=service.db, caches=service.caches, name="study", action="pause")
    assert service.claim(idle, "study") is None
    decisions = len(service.decided)
    assert service.claim(idle, "study") is None
    assert len(service.decided) == decisions
    studies.act_on_study(db=service.db, caches=service.caches, name="study", action="resume")
    assert service.claim(idle, "study") is not None


def test_a_retried_claim_gets_its_trial_back(service: Service) -> None:
    service.create(budget={"max_trials": 1, "lease_seconds": 60})
    worker, idle = service.register("w"), service.register("idle")
    first = service.claim(worker, request_id="key")
    assert service.claim(idle) is None
    again = service.claim(worker, request_id="key")  # the answer was lost: the worker retries
    assert first is not None and again is not None and again.id == first.id


def test_unknown_workers_and_studies_get_their_errors(service: Service) -> None:
    _spend(service, 1)
    idle = service.register("idle")
    assert service.claim(idle, "study") is None
    assert service.claim(idle) is None
    with pytest.raises(NotFoundError):
        service.claim(idle + 100)
    with pytest.raises(NotFoundError):
        service.claim(idle + 100, "study")
    service.caches.note_claim("gone", got_trial=False)
    with pytest.raises(NotFoundError):
        service.claim(idle, "gone")


def test_a_spent_grid_is_answered_without_a_decision(service: Service) -> None:
    space = {"a": {"type": "int", "low": 0, "high": 1}}
    service.create(search_space=space, sampler={"name": "grid"}, budget={"max_trials": 10})
    runners = [service.register(f"runner-{i}") for i in range(2)]
    assert all(service.claim(w) is not None for w in runners)
    idle = service.register("idle")
    assert service.claim(idle) is None
    decisions, before = len(service.decided), service.rows()
    assert service.claim(idle) is None
    assert len(service.decided) == decisions
    assert service.rows() == before


def test_trials_still_running_count_in_the_read(service: Service) -> None:
    """Through the database's rows, not this process's cache: another server's write counts."""
    runners, held = _spend(service, 1)
    idle = service.register("idle")
    assert service.claim(idle) is None
    with service.db.session(write=True) as session:  # as another replica would finish it
        trial = session.get(Trial, held[0].id)
        trial.state, trial.finished_at = TrialState.FAIL.value, utcnow()
        session.get(Study, trial.study_id).seq += 1
    decisions = len(service.decided)
    service.claim(idle)
    assert len(service.decided) == decisions + 1
