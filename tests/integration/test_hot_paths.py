"""The hot paths write exactly the rows the general path writes, and take the ordinary calls."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from hposvc.db.base import utcnow
from hposvc.db.models import Trial
from hposvc.db.session import Database
from hposvc.domain.states import TrialState
from hposvc.errors import NotFoundError
from hposvc.samplers import StudyCaches
from hposvc.schemas.studies import StudySpec
from hposvc.schemas.trials import CompleteRequest, NextClaim, ReportRequest, UserAttrsRequest
from hposvc.schemas.workers import WorkerRegister
from hposvc.services import hot_paths, studies, trials, workers
from hposvc.services.decisions import changed_trial_records, study_changes
from tests.factories import make_spec

SPECS = {
    "random+median": make_spec(
        sampler={"name": "random", "seed": 3},
        pruner={"name": "median", "options": {"n_startup_trials": 2}},
        budget={"max_trials": 14, "lease_seconds": 60},
    ),
    "tpe+hyperband": make_spec(
        sampler={"name": "tpe", "seed": 3, "options": {"n_startup_trials": 4}},
        pruner={"name": "hyperband", "options": {"min_resource": 1, "max_resource": 6}},
        budget={"max_trials": 14, "lease_seconds": 60},
    ),
    # One trial at a time: a claim while the other worker's trial runs gets none.
    "random+median, max_concurrent 1": make_spec(
        sampler={"name": "random", "seed": 4},
        pruner={"name": "median", "options": {"n_startup_trials": 2}},
        budget={"max_trials": 10, "lease_seconds": 60, "max_concurrent": 1},
    ),
    "grid": make_spec(
        search_space={
            "a": {"type": "int", "low": 0, "high": 2},
            "b": {"type": "categorical", "choices": ["x", "y", "z"]},
        },
        sampler={"name": "grid", "seed": 3},
        budget={"max_trials": 20, "lease_seconds": 60},
    ),
}
IGNORED = {
    "created_at",
    "started_at",
    "finished_at",
    "lease_expires_at",
    "updated_at",
    "completed_at",
}


def _drive(
    url: str,
    spec: dict[str, Any],
    *,
    next_claims: bool = False,
    lane: bool = False,
    servers: int = 1,
) -> list[tuple[int, str]]:
    """Two workers interleave claims, reports (pruned or not) and completes to the end.

    With ``next_claims`` each report and complete carries the worker's next claim, as slots
    send them, and the trial an answer brings is the worker's next; they are answered as
    the fast lane answers them (``lane``, see ``_end``) or as the general entry points do.
    With several ``servers`` (each its own engine and caches, as replicas behind a load
    balancer), each worker's requests go to them in turn.

    Returns:
        Each trial a worker got, in order, and how (claimed, or brought by an answer).
    """
    replicas = [(Database(url), StudyCaches()) for _ in range(servers)]
    db = replicas[0][0]
    studies.create_study(db=db, spec=StudySpec.model_validate(spec))
    ids = [workers.register(db=db, body=WorkerRegister(name=f"w{i}", host="h")) for i in range(2)]
    held: dict[int, Any] = {}
    got: list[tuple[int, str]] = []
    for turn in range(300):
        worker = ids[turn % 2]
        db, caches = replicas[turn // 2 % servers]
        nxt = NextClaim(request_id=f"n{turn}") if next_claims else None
        if worker not in held:
            claimed = trials.claim(db=db, caches=caches, worker_id=worker, request_id=f"r{turn}")
            if claimed is None:
                if not held:
                    break
                continue
            held[worker] = [claimed, 0]
            got.append((worker, f"claimed {claimed.number}"))
            continue
        claimed, step = held[worker]
        x = float(claimed.params.get("x", claimed.params.get("a", 0)))
        if step < 6:
            value = x * x + 1 / (step + 1)
            body: Any = ReportRequest(worker_id=worker, step=step + 1, value=value, next_claim=nxt)
            held[worker][1] = step + 1
        else:
            body = CompleteRequest(
                worker_id=worker, values=[x * x], user_attrs={"w": worker}, next_claim=nxt
            )
        answer = _end(db, caches, claimed.id, body, lane=lane)
        if isinstance(body, ReportRequest) and not answer.should_prune:
            continue
        del held[worker]
        if isinstance(body, ReportRequest):  # the worker sends its metrics, as slots do
            attrs = UserAttrsRequest(worker_id=worker, user_attrs={"epochs": step + 1})
            trials.set_user_attrs(db=db, caches=caches, trial_id=claimed.id, body=attrs)
        if answer.next_trial is not None:
            held[worker] = [answer.next_trial, 0]
            got.append((worker, f"brought {answer.next_trial.number}"))
    for db, _caches in replicas:
        db.dispose()
    return got


def _end(
    db: Database,
    caches: StudyCaches,
    trial_id: int,
    body: ReportRequest | CompleteRequest,
    *,
    lane: bool,
) -> Any:
    """A report or complete as the fast lane answers it (``lane``: on SQLite its event-loop
    call first, as ``WorkerFastLane`` makes it) or as the general entry point does."""
    report = isinstance(body, ReportRequest)
    if lane and db.is_sqlite:
        now = (trials.report_now if report else trials.complete_now)(
            db=db, caches=caches, trial_id=trial_id, body=body
        )
        if now is not None:
            answer, rest = now
            if rest is not None:
                rest()
            return answer
    return (trials.report if report else trials.complete)(
        db=db, caches=caches, trial_id=trial_id, body=body
    )


def _rows(url: str) -> dict[str, list[dict[str, Any]]]:
    engine = create_engine(url)
    out = {}
    with engine.connect() as conn:
        for table, order in [
            ("studies", "id"),
            ("trials", "id"),
            ("intermediate_values", "trial_id, step"),
        ]:
            rows = conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}")).mappings()
            out[table] = [{k: v for k, v in r.items() if k not in IGNORED} for r in rows]
    engine.dispose()
    return out


def _by_number(rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The rows with trials named by number, not id: on PostgreSQL a hot claim inserts its
    trial with an id reserved ahead (see ``Database.reserve_id``), so ids need not follow
    numbers there."""
    numbers = {t["id"]: t["number"] for t in rows["trials"]}
    return {
        **rows,
        "trials": sorted(
            ({k: v for k, v in t.items() if k != "id"} for t in rows["trials"]),
            key=lambda t: t["number"],
        ),
        "intermediate_values": sorted(
            ({**v, "trial_id": numbers[v["trial_id"]]} for v in rows["intermediate_values"]),
            key=lambda v: (v["trial_id"], v["step"]),
        ),
    }


@pytest.fixture
def no_hot_paths(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("fast_claim", "fast_report", "fast_complete", "fast_set_user_attrs"):
        monkeypatch.setattr(trials, name, lambda **_: None)
    yield


@pytest.fixture
def hot_path_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = dict.fromkeys(["fast_claim", "fast_report", "fast_complete", "fast_set_user_attrs"], 0)
    for name in calls:
        real = getattr(hot_paths, name)

        def counting(*, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            answer = _real(**kwargs)
            calls[_name] += answer is not None
            return answer

        monkeypatch.setattr(trials, name, counting)
    return calls


@pytest.mark.parametrize("kind", SPECS)
def test_hot_and_general_paths_write_the_same_rows(
    kind: str, database_url: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    calls = request.getfixturevalue("hot_path_calls")
    _drive(database_url, SPECS[kind])
    hot = _rows(database_url)
    pruned = calls["fast_set_user_attrs"] > 0
    assert calls["fast_claim"] and calls["fast_report"] and calls["fast_complete"], calls
    request.getfixturevalue("no_hot_paths")
    if database_url.startswith("sqlite"):
        other = f"sqlite:///{tmp_path}/general.db"
        from hposvc.db.migrate import upgrade

        upgrade(other)
    else:
        engine = create_engine(database_url)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "TRUNCATE intermediate_values, trials, studies, workers "
                    "RESTART IDENTITY CASCADE"
                )
            )
        engine.dispose()
        other = database_url
    _drive(other, SPECS[kind])
    hot, general = _by_number(hot), _by_number(_rows(other))
    assert hot["studies"][0]["state"] == "completed"
    assert pruned == any(t["state"] == "pruned" for t in hot["trials"]), calls
    for table in hot:
        for i, (h, g) in enumerate(zip(hot[table], general[table], strict=True)):
            assert h == g, (table, i, {k: (v, g[k]) for k, v in h.items() if g[k] != v})


def test_a_catch_up_reads_what_the_general_path_reads(database_url: str, tmp_path: Any) -> None:
    """``study_changes`` (one statement on PostgreSQL) gives the study's attributes and the
    records ``changed_trial_records`` gives, intermediate values exact to the last bit, for
    every seq a cache may be at: all trials, some, none."""
    url = _fresh(database_url, tmp_path, "catch-up")
    db, caches = Database(url), StudyCaches()
    spec = make_spec(sampler={"name": "tpe", "seed": 2}, budget={"max_trials": 10})
    studies.create_study(db=db, spec=StudySpec.model_validate(spec))
    worker = workers.register(db=db, body=WorkerRegister(name="w", host="h"))
    awkward = [0.1 + 0.2, 1e-320, -2.5e300, 1 / 3, 7.0, 0.0]
    for i in range(4):
        held = trials.claim(db=db, caches=caches, worker_id=worker)
        for step, value in enumerate(awkward[i:], start=1):
            body = ReportRequest(worker_id=worker, step=step, value=value)
            trials.report(db=db, caches=caches, trial_id=held.id, body=body)
        if i < 3:
            body = CompleteRequest(worker_id=worker, values=[awkward[i]])
            trials.complete(db=db, caches=caches, trial_id=held.id, body=body)
    with db.connection() as conn:
        row = conn.execute(text("SELECT id, seq, system_attrs FROM studies")).one()
        study_id, seq, attrs = row
        if isinstance(attrs, str):  # SQLite's JSON text
            attrs = json.loads(attrs)
        for since in (-1, 0, seq // 2, seq - 1, seq):
            records = changed_trial_records(conn, study_id, since)
            assert study_changes(conn, study_id, since) == (attrs, records), since
        assert study_changes(conn, study_id, seq)[1] == []
        values = changed_trial_records(conn, study_id, -1)[3].intermediate_values
    assert values == dict(enumerate(awkward[3:], start=1))
    db.dispose()


@pytest.mark.parametrize("kind", SPECS)
def test_two_servers_taking_turns_write_what_one_server_writes(
    kind: str, database_url: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    """Replicas behind a load balancer: each request finds the study moved on by the other
    server, catches its cache up under the study's lock and is decided on the hot path, with
    the decisions (and rows) of a single server."""
    calls = request.getfixturevalue("hot_path_calls")
    got = _drive(database_url, SPECS[kind], servers=2)
    shared = _by_number(_rows(database_url))
    two = dict(calls)
    calls.update(dict.fromkeys(calls, 0))
    other = _fresh(database_url, tmp_path, "one")
    assert _drive(other, SPECS[kind]) == got
    one = _by_number(_rows(other))
    assert shared["studies"][0]["state"] == "completed"
    for table in shared:
        for i, (a, b) in enumerate(zip(shared[table], one[table], strict=True)):
            assert a == b, (table, i, {k: (v, b[k]) for k, v in a.items() if b[k] != v})
    # As many claims, reports and completes on the hot path as with one server, but for the
    # first request the second server gets (it builds its cache on the general path).
    for name in ("fast_claim", "fast_report", "fast_complete"):
        assert two[name] >= calls[name] - 1 > 0, (name, two, calls)


def test_caches_keep_the_most_recently_used_studies(database_url: str) -> None:
    """Past the limit the least recently used study's cache goes; using it rebuilds it."""
    db, caches = Database(database_url), StudyCaches(max_studies=2)
    worker = workers.register(db=db, body=WorkerRegister(name="w", host="h"))
    names = ["s0", "s1", "s2"]
    for name in names:
        studies.create_study(db=db, spec=StudySpec.model_validate(make_spec(name=name)))
    claimed = {
        n: trials.claim(db=db, caches=caches, worker_id=worker, study_name=n) for n in names
    }
    ids = {n: c.study_id for n, c in claimed.items()}
    assert caches.get(ids["s0"]) is None  # evicted when s2 came
    assert caches.get(ids["s1"]) is not None and caches.get(ids["s2"]) is not None
    for name in names:  # each study goes on from where its trials are, evicted or not
        done = CompleteRequest(worker_id=worker, values=[1.0])
        trials.complete(db=db, caches=caches, trial_id=claimed[name].id, body=done)
        again = trials.claim(db=db, caches=caches, worker_id=worker, study_name=name)
        assert again is not None and again.number == 1
    assert len([i for i in ids.values() if caches.get(i) is not None]) == 2
    db.dispose()


def test_a_claim_after_a_lease_ran_out_takes_the_general_path(database_url: str) -> None:
    """The hot claim sees a running trial whose lease ran out, and leaves it to the general path.

    Hot claims first: from the sixth on, PostgreSQL runs the lock as a prepared statement.
    """
    db, caches = Database(database_url), StudyCaches()
    spec = make_spec(sampler={"name": "random", "seed": 3}, budget={"max_trials": 20})
    studies.create_study(db=db, spec=StudySpec.model_validate(spec))
    worker = workers.register(db=db, body=WorkerRegister(name="w", host="h"))
    hot = {"db": db, "caches": caches, "worker_id": worker, "study_name": None, "request_id": None}
    for turn in range(7):  # the first builds the study's cache
        claimed = (hot_paths.fast_claim if turn else trials.claim)(**hot)
        assert claimed is not None
        done = CompleteRequest(worker_id=worker, values=[1.0])
        trials.complete(db=db, caches=caches, trial_id=claimed.id, body=done)
    held = trials.claim(db=db, caches=caches, worker_id=worker)
    assert held is not None
    with db.session(write=True) as session:
        session.get(Trial, held.id).lease_expires_at = utcnow() - timedelta(seconds=1)
    assert hot_paths.fast_claim(**hot) is None
    assert trials.claim(db=db, caches=caches, worker_id=worker) is not None
    with db.session() as session:
        assert session.get(Trial, held.id).state != TrialState.RUNNING.value
    db.dispose()


def _fresh(database_url: str, tmp_path: Any, name: str) -> str:
    """An empty database like ``database_url``'s (PostgreSQL: the same one, emptied)."""
    if database_url.startswith("sqlite"):
        from hposvc.db.migrate import upgrade

        url = f"sqlite:///{tmp_path}/{name}.db"
        upgrade(url)
        return url
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            text("TRUNCATE intermediate_values, trials, studies, workers RESTART IDENTITY CASCADE")
        )
    engine.dispose()
    return database_url


def _loss(trial: Any, step: int) -> float:
    return trial.params["x"] ** 2 / 25 + 1 / step


def _report_rounds(url: str, *, together: bool) -> tuple[list[list[Any]], dict[str, Any]]:
    """Four workers report each epoch's value at once, as one batch or one report at a time.

    Returns:
        The answers, round by round, and the rows written.
    """
    db, caches = Database(url), StudyCaches()
    spec = make_spec(
        sampler={"name": "random", "seed": 5},
        pruner={"name": "median", "options": {"n_startup_trials": 1, "n_warmup_steps": 3}},
        budget={"max_trials": 10, "lease_seconds": 60},
    )
    studies.create_study(db=db, spec=StudySpec.model_validate(spec))
    ids = [workers.register(db=db, body=WorkerRegister(name=f"w{i}", host="h")) for i in range(4)]
    for _ in range(2):  # finished trials for the median pruner to compare with
        first = trials.claim(db=db, caches=caches, worker_id=ids[0])
        for step in range(1, 7):
            body = ReportRequest(worker_id=ids[0], step=step, value=_loss(first, step))
            trials.report(db=db, caches=caches, trial_id=first.id, body=body)
        done = CompleteRequest(worker_id=ids[0], values=[_loss(first, 6)])
        trials.complete(db=db, caches=caches, trial_id=first.id, body=done)
    held = {w: trials.claim(db=db, caches=caches, worker_id=w) for w in ids}
    study_id = next(iter(held.values())).study_id
    answers = []
    for step in range(1, 7):
        queued = [
            hot_paths._Queued(t.id, ReportRequest(worker_id=w, step=step, value=_loss(t, step)))
            for w, t in held.items()
        ]
        for batch in [queued] if together else [[q] for q in queued]:
            hot_paths._decide_together(db, caches, study_id, batch)
        assert all(q.done and q.error is None and q.answer is not None for q in queued)
        answers.append([q.answer for q in queued])
        held = {
            w: t
            for (w, t), q in zip(held.items(), queued, strict=True)
            if not q.answer[0].should_prune
        }
    db.dispose()
    return answers, _rows(url)


def _assert_same_rows_but_seq(rows: dict[str, Any], rows_alone: dict[str, Any]) -> None:
    """Every table's rows are equal; only the study's seq may differ (a batch is one seq)."""
    for table in rows:
        for row, row_alone in zip(rows[table], rows_alone[table], strict=True):
            assert {**row, "seq": 0} == {**row_alone, "seq": 0}, table


def test_reports_decided_together_write_what_one_at_a_time_writes(
    database_url: str, tmp_path: Any
) -> None:
    together, rows = _report_rounds(_fresh(database_url, tmp_path, "together"), together=True)
    alone, rows_alone = _report_rounds(_fresh(database_url, tmp_path, "alone"), together=False)
    assert together == alone
    assert any(answer[0].should_prune for round_ in together for answer in round_)
    assert [len(round_) for round_ in together[:3]] == [4, 4, 4]  # batches of several
    # Each transaction is one decision with one seq: the batches move it on fewer times
    assert rows["studies"][0]["seq"] < rows_alone["studies"][0]["seq"]
    _assert_same_rows_but_seq(rows, rows_alone)


def _mixed_rounds(url: str, *, together: bool) -> tuple[list[list[Any]], dict[str, Any]]:
    """Four workers claim, report and complete at once, as one batch or one at a time.

    Each round every worker sends its next request (the last two from rounds 1 and 2): a claim when
    it holds no trial, else a report, or a complete after the third report; so the batches mix
    claims (two at once in the first round), reports that continue or prune, and completes.

    Returns:
        What each answer decided, round by round, and the rows written.
    """
    db, caches = Database(url), StudyCaches()
    spec = make_spec(
        sampler={"name": "random", "seed": 5},
        pruner={"name": "median", "options": {"n_startup_trials": 1, "n_warmup_steps": 1}},
        budget={"max_trials": 40, "lease_seconds": 60},
    )
    studies.create_study(db=db, spec=StudySpec.model_validate(spec))
    ids = [workers.register(db=db, body=WorkerRegister(name=f"w{i}", host="h")) for i in range(4)]
    first = trials.claim(db=db, caches=caches, worker_id=ids[0])  # builds the study's cache
    done = CompleteRequest(worker_id=ids[0], values=[_loss(first, 3)])
    trials.complete(db=db, caches=caches, trial_id=first.id, body=done)
    study_id = first.study_id
    held: dict[int, list[Any]] = {}
    answers = []
    for round_ in range(20):
        queued, senders = [], ids[: round_ + 2]
        for w in senders:
            if w not in held:
                queued.append(hot_paths._Queued(None, hot_paths._ClaimBody(w, None)))
                continue
            trial, step = held[w]
            if step < 3:
                body: Any = ReportRequest(worker_id=w, step=step + 1, value=_loss(trial, step + 1))
            else:
                body = CompleteRequest(worker_id=w, values=[_loss(trial, 3)])
            queued.append(hot_paths._Queued(trial.id, body))
        for batch in [queued] if together else [[q] for q in queued]:
            hot_paths._decide_together(db, caches, study_id, batch)
        assert all(q.done and q.error is None and q.answer is not None for q in queued)
        decided: list[Any] = []
        for w, q in zip(senders, queued, strict=True):
            if q.trial_id is None:  # a claim
                held[w] = [q.answer, 0]
                decided.append(("claimed", q.answer.number, q.answer.params))
            elif isinstance(q.body, ReportRequest):
                held[w][1] += 1
                if q.answer[0].should_prune:
                    del held[w]
                decided.append(("report", q.answer))
            else:
                del held[w]
                decided.append(("complete", q.answer.state, q.answer.values))
        answers.append(decided)
    db.dispose()
    return answers, _rows(url)


def test_claims_reports_and_completes_decided_together_match_one_at_a_time(
    database_url: str, tmp_path: Any
) -> None:
    together, rows = _mixed_rounds(_fresh(database_url, tmp_path, "together"), together=True)
    alone, rows_alone = _mixed_rounds(_fresh(database_url, tmp_path, "alone"), together=False)
    assert together == alone
    kinds = [{d[0] for d in round_} for round_ in together]
    assert [d[0] for d in together[0]] == ["claimed"] * 2  # several claims in one batch
    for pair in [{"claimed", "report"}, {"claimed", "complete"}, {"report", "complete"}]:
        assert any(pair <= k for k in kinds), pair  # batches that mix them
    assert any(d[0] == "report" and d[1][0].should_prune for r in together for d in r)
    assert rows["studies"][0]["seq"] < rows_alone["studies"][0]["seq"]
    _assert_same_rows_but_seq(rows, rows_alone)


@pytest.mark.parametrize("then_claim", [False, True])
def test_a_write_that_fails_in_a_batch_stores_none_of_it(
    database_url: str, then_claim: bool
) -> None:
    """On PostgreSQL a batch's writes go out together with its COMMIT (pipeline mode): one that
    fails must still roll back those sent before it, answer no one, and drop the cache; also
    when a claim after it waits for their answers first (it reads the new trial's id)."""
    db, caches = Database(database_url), StudyCaches()
    spec = make_spec(sampler={"name": "random", "seed": 5}, budget={"max_trials": 10})
    studies.create_study(db=db, spec=StudySpec.model_validate(spec))
    ids = [workers.register(db=db, body=WorkerRegister(name=f"w{i}", host="h")) for i in range(2)]
    held = [trials.claim(db=db, caches=caches, worker_id=w) for w in ids]
    study_id = held[0].study_id
    with db.session(write=True) as session:  # behind the cache's back: the insert will clash
        session.execute(
            text(
                "INSERT INTO intermediate_values (trial_id, step, value, should_prune) "
                "VALUES (:t, 1, 7.0, false)"
            ),
            {"t": held[1].id},
        )
    queued = [
        hot_paths._Queued(t.id, ReportRequest(worker_id=w, step=1, value=1.0))
        for w, t in zip(ids, held, strict=True)
    ]
    if then_claim:
        queued.append(hot_paths._Queued(None, hot_paths._ClaimBody(ids[0], None)))
    hot_paths._decide_together(db, caches, study_id, queued)
    assert all(q.done and q.answer is None and q.error is not None for q in queued)
    assert caches.get(study_id) is None
    rows = _rows(database_url)
    assert [(v["trial_id"], v["value"]) for v in rows["intermediate_values"]] == [
        (held[1].id, 7.0)
    ]
    assert len(rows["trials"]) == 2
    # the general path carries on from the database
    body = ReportRequest(worker_id=ids[0], step=1, value=1.0)
    assert not trials.report(db=db, caches=caches, trial_id=held[0].id, body=body).should_prune
    db.dispose()


# -- batches decided on the rows known here (PostgreSQL) ------------------------------------


@pytest.fixture
def guard_calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """One entry per batch decided under the guard, without reading its rows first."""
    calls: list[bool] = []
    real = hot_paths._guard

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(bool(kwargs["claims"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(hot_paths, "_guard", counting)
    return calls


@pytest.mark.postgres
def test_batches_decided_on_known_rows_match_batches_that_read_them(
    postgres_url: str, guard_calls: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claims, reports (some pruning) and completes give the same answers and rows, seq too,
    whether the rows this process wrote are kept or read again under the lock each time."""
    known, rows = _mixed_rounds(_fresh(postgres_url, None, ""), together=True)
    assert len(guard_calls) >= 15 and True in guard_calls and False in guard_calls
    monkeypatch.setattr(hot_paths, "_remember", lambda *_args: None)
    guard_calls.clear()
    read, rows_read = _mixed_rounds(_fresh(postgres_url, None, ""), together=True)
    assert not guard_calls
    assert known == read
    assert rows == rows_read


def _known_study(url: str, max_trials: int = 10) -> tuple[Database, StudyCaches, int, Any]:
    """A study whose cache and running trial are known to this process (claimed by a batch)."""
    db, caches = Database(url), StudyCaches()
    spec = make_spec(sampler={"name": "random", "seed": 5}, budget={"max_trials": max_trials})
    studies.create_study(db=db, spec=StudySpec.model_validate(spec))
    worker = workers.register(db=db, body=WorkerRegister(name="w", host="h"))
    first = trials.claim(db=db, caches=caches, worker_id=worker)  # builds the cache
    trials.complete(
        db=db, caches=caches, trial_id=first.id, body=CompleteRequest(worker_id=worker, values=[1])
    )
    claim = hot_paths._Queued(None, hot_paths._ClaimBody(worker, None))
    hot_paths._decide_together(db, caches, first.study_id, [claim])
    assert claim.answer is not None
    return db, caches, worker, claim.answer


@pytest.mark.postgres
def test_a_batch_on_known_rows_leaves_a_study_changed_elsewhere_to_the_general_path(
    postgres_url: str, guard_calls: list[bool], caplog: pytest.LogCaptureFixture
) -> None:
    """Another server merges user attributes into the trial: the complete decided on the
    rows known here would write them over, so the guard fails it and nothing is written
    (quietly: an expected event, not a warning in the server's log)."""
    url = _fresh(postgres_url, None, "")
    db, caches, worker, held = _known_study(url)
    report = hot_paths._Queued(held.id, ReportRequest(worker_id=worker, step=1, value=0.5))
    guard_calls.clear()
    hot_paths._decide_together(db, caches, held.study_id, [report])
    assert report.answer is not None and guard_calls == [False]
    other_db = Database(url)
    trials.set_user_attrs(
        db=other_db,
        caches=StudyCaches(),
        trial_id=held.id,
        body=UserAttrsRequest(worker_id=worker, user_attrs={"other": 1}),
    )
    other_db.dispose()
    body = CompleteRequest(worker_id=worker, values=[0.5], user_attrs={"mine": 2})
    complete = hot_paths._Queued(held.id, body)
    with caplog.at_level(logging.DEBUG):
        hot_paths._decide_together(db, caches, held.study_id, [complete])
    assert guard_calls == [False, False]
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert complete.done and complete.answer is None and complete.error is None
    assert caches.get(held.study_id) is None
    with db.session() as session:
        assert session.get(Trial, held.id).state == TrialState.RUNNING.value
    done = trials.complete(db=db, caches=caches, trial_id=held.id, body=body)
    assert done.user_attrs == {"other": 1, "mine": 2}
    db.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("finished", [False, True])
def test_user_attrs_written_here_keep_the_known_rows(
    postgres_url: str, guard_calls: list[bool], finished: bool
) -> None:
    """A pruned trial's attrs (sent while the worker's next trial trains) or a running trial's
    attrs, merged by this process's hot path, leave the rows known here valid: the study's next
    batch is still decided under the guard, and a complete merges its attrs onto those."""
    url = _fresh(postgres_url, None, "")
    db, caches, worker, held = _known_study(url)
    study_id = held.study_id
    target = held
    if finished:  # the worker's trial completes and its next is claimed in the same batch
        body = CompleteRequest(worker_id=worker, values=[0.3])
        ended = hot_paths._Queued(held.id, body)
        claim = hot_paths._Queued(None, hot_paths._ClaimBody(worker, None))
        hot_paths._decide_together(db, caches, study_id, [ended, claim])
        assert ended.answer is not None and claim.answer is not None
        target = claim.answer
    guard_calls.clear()
    attrs = UserAttrsRequest(worker_id=worker, user_attrs={"history": [1, 2], "slot": 0})
    trials.set_user_attrs(db=db, caches=caches, trial_id=held.id, body=attrs)
    seq = _rows(url)["studies"][0]["seq"]
    assert caches.get(study_id).known_rows.seq == seq  # the attrs moved the seq on
    report = hot_paths._Queued(target.id, ReportRequest(worker_id=worker, step=1, value=0.5))
    hot_paths._decide_together(db, caches, study_id, [report])
    assert report.answer is not None and guard_calls == [False]
    body = CompleteRequest(worker_id=worker, values=[0.5], user_attrs={"mine": 2})
    complete = hot_paths._Queued(target.id, body)
    hot_paths._decide_together(db, caches, study_id, [complete])
    assert complete.answer is not None and guard_calls == [False, False]
    by_id = {t["id"]: t for t in _rows(url)["trials"]}
    if finished:
        assert by_id[held.id]["user_attrs"] == {"history": [1, 2], "slot": 0}
        assert by_id[target.id]["user_attrs"] == {"mine": 2}
    else:
        assert by_id[held.id]["user_attrs"] == {"history": [1, 2], "slot": 0, "mine": 2}
    db.dispose()


@pytest.mark.postgres
def test_a_claim_on_known_rows_sees_a_lease_that_ran_out(
    postgres_url: str, guard_calls: list[bool]
) -> None:
    """A lease runs out with nothing written (a worker went quiet): a claim decided on the rows
    known here is failed by the guard and left to the general path, which expires it."""
    url = _fresh(postgres_url, None, "")
    db, caches, worker, held = _known_study(url)
    with db.session(write=True) as session:
        session.get(Trial, held.id).lease_expires_at = utcnow() - timedelta(seconds=1)
    claim = hot_paths._Queued(None, hot_paths._ClaimBody(worker, None))
    guard_calls.clear()
    hot_paths._decide_together(db, caches, held.study_id, [claim])
    assert guard_calls == [True]
    assert claim.done and claim.answer is None and claim.error is None
    assert len(_rows(url)["trials"]) == 2
    assert trials.claim(db=db, caches=caches, worker_id=worker) is not None
    with db.session() as session:
        assert session.get(Trial, held.id).state != TrialState.RUNNING.value
    db.dispose()


@pytest.mark.postgres
def test_a_trial_finished_on_known_rows_is_known_no_more(
    postgres_url: str, guard_calls: list[bool]
) -> None:
    """A retried complete (its answer was lost) finds the trial finished: the general path
    answers it from the database, and nothing is written twice."""
    url = _fresh(postgres_url, None, "")
    db, caches, worker, held = _known_study(url)
    body = CompleteRequest(worker_id=worker, values=[0.5], user_attrs={"mine": 2})
    first, retried = hot_paths._Queued(held.id, body), hot_paths._Queued(held.id, body)
    guard_calls.clear()
    hot_paths._decide_together(db, caches, held.study_id, [first])
    assert guard_calls == [False] and first.answer is not None
    before = _rows(url)
    hot_paths._decide_together(db, caches, held.study_id, [retried])
    assert retried.done and retried.answer is None and retried.error is None
    assert _rows(url) == before
    again = trials.complete(db=db, caches=caches, trial_id=held.id, body=body)
    assert again.state == TrialState.COMPLETE and again.values == first.answer.values
    db.dispose()


def _assumed_study(url: str) -> tuple[Database, StudyCaches, int, Any]:
    """``_known_study``, where a claim that read its context has just gone to the study."""
    db, caches, worker, _held = _known_study(url)
    held = trials.claim(db=db, caches=caches, worker_id=worker)
    assert caches.claim_target(None) == held.study_id
    return db, caches, worker, held


def _assumed_study_then_a_second_elsewhere(url: str) -> tuple[Database, StudyCaches, int, Any]:
    """``_assumed_study``, then another server starts a second study."""
    db, caches, worker, held = _assumed_study(url)
    spec = make_spec(name="second", sampler={"name": "random", "seed": 6})
    other_db = Database(url)
    studies.create_study(db=other_db, spec=StudySpec.model_validate(spec))
    other_db.dispose()
    return db, caches, worker, held


@pytest.fixture
def context_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per claim that read ``_CLAIM_CONTEXT`` before taking the study's lock."""
    reads: list[int] = []
    real = Database.read_once

    def counting(self: Database, statement: Any, params: dict[str, Any]) -> list[Any]:
        if statement is hot_paths._CLAIM_CONTEXT:
            reads.append(1)
        return real(self, statement, params)

    monkeypatch.setattr(Database, "read_once", counting)
    return reads


@pytest.mark.postgres
def test_a_claim_on_known_rows_is_decided_without_reading_its_context_first(
    postgres_url: str, guard_calls: list[bool], context_reads: list[int]
) -> None:
    """The study the last claim went to, with its rows known: the claim is decided under the
    guard alone, and a retry of it (same request id) still gets the same trial back."""
    url = _fresh(postgres_url, None, "")
    db, caches, worker, _held = _assumed_study(url)
    guard_calls.clear()
    context_reads.clear()
    first = trials.claim(db=db, caches=caches, worker_id=worker, request_id="r1")
    assert first is not None and not context_reads and guard_calls == [True]
    again = trials.claim(db=db, caches=caches, worker_id=worker, request_id="r1")
    assert again is not None and (again.id, again.number) == (first.id, first.number)
    assert [t["claim_request_id"] for t in _rows(url)["trials"]].count("r1") == 1
    db.dispose()


@pytest.mark.postgres
def test_a_claim_on_known_rows_by_an_unknown_worker_writes_nothing(
    postgres_url: str, guard_calls: list[bool], caplog: pytest.LogCaptureFixture
) -> None:
    """The guard fails the batch: nothing is written, and the server logs no warning (a
    guard that fails is an expected event)."""
    url = _fresh(postgres_url, None, "")
    db, caches, _worker, _held = _assumed_study(url)
    before = _rows(url)
    guard_calls.clear()
    with pytest.raises(NotFoundError), caplog.at_level(logging.DEBUG):
        trials.claim(db=db, caches=caches, worker_id=987654, request_id="r1")
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert guard_calls == [True]  # tried on assumptions, failed by the guard
    assert _rows(url) == before
    db.dispose()


@pytest.mark.postgres
def test_a_claim_naming_no_study_is_not_decided_on_assumptions_once_another_runs(
    postgres_url: str, guard_calls: list[bool], context_reads: list[int]
) -> None:
    """Another server starts a second study: which study a claim naming none goes to is the
    general path's call again, and the claims after it read their context."""
    url = _fresh(postgres_url, None, "")
    db, caches, worker, held = _assumed_study_then_a_second_elsewhere(url)
    guard_calls.clear()
    context_reads.clear()
    claimed = trials.claim(db=db, caches=caches, worker_id=worker, request_id="r1")
    assert claimed is not None and guard_calls == [True] and not context_reads
    assert caches.claim_target(None) is None  # the guard failed: nothing is assumed now
    assert trials.claim(db=db, caches=caches, worker_id=worker, request_id="r2") is not None
    assert len(context_reads) == 1
    assert {t["claim_request_id"] for t in _rows(url)["trials"]} >= {"r1", "r2"}
    assert held.study_id == claimed.study_id
    db.dispose()


@pytest.mark.postgres
def test_a_claim_sent_twice_into_one_batch_claims_one_trial(postgres_url: str) -> None:
    """A worker's retry that arrives while its first attempt waits for the study's lock: the
    batch decides the first, the general path replays it for the second."""
    url = _fresh(postgres_url, None, "")
    db, caches, worker, held = _assumed_study(url)
    body = hot_paths._ClaimBody(worker, "r1", assumed=True, any_study=True)
    first, retried = hot_paths._Queued(None, body), hot_paths._Queued(None, body)
    hot_paths._decide_together(db, caches, held.study_id, [first, retried])
    assert first.answer is not None and retried.done and retried.answer is None
    again = trials.claim(db=db, caches=caches, worker_id=worker, request_id="r1")
    assert again is not None and again.id == first.answer.id
    assert [t["claim_request_id"] for t in _rows(url)["trials"]].count("r1") == 1
    db.dispose()


# -- the next claim decided in the batch of the request that ends the trial (PostgreSQL) ----


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per batch decided (``_decide_together``), with its number of requests."""
    seen: list[int] = []
    real = hot_paths._decide_together

    def counting(db: Database, caches: StudyCaches, study_id: int, queued: list[Any]) -> None:
        seen.append(len(queued))
        real(db, caches, study_id, queued)

    monkeypatch.setattr(hot_paths, "_decide_together", counting)
    return seen


def _complete_asking(worker: int, request_id: str, study: str | None = None) -> CompleteRequest:
    nxt = NextClaim(study=study, request_id=request_id)
    return CompleteRequest(worker_id=worker, values=[0.5], next_claim=nxt)


@pytest.mark.postgres
def test_a_next_claim_is_decided_in_the_batch_that_ends_the_trial(
    postgres_url: str, batches: list[int], context_reads: list[int]
) -> None:
    """One batch completes the trial and claims the next (no context read, no batch of its
    own); the next trial's rows are known here after it; a retry replays the same trial."""
    url = _fresh(postgres_url, None, "")
    db, caches, worker, held = _assumed_study(url)
    batches.clear()
    context_reads.clear()
    body = _complete_asking(worker, "n1")
    done = trials.complete(db=db, caches=caches, trial_id=held.id, body=body)
    assert done.next_trial is not None and batches == [1] and not context_reads
    assert done.next_trial.id in caches.get(held.study_id).known_rows.trials
    assert caches.study_of_trial(done.next_trial.id) == held.study_id
    again = trials.complete(db=db, caches=caches, trial_id=held.id, body=body)
    assert again.next_trial is not None and again.next_trial.id == done.next_trial.id
    assert [t["claim_request_id"] for t in _rows(url)["trials"]].count("n1") == 1
    named = _complete_asking(worker, "n2", study=done.study)
    batches.clear()
    after = trials.complete(db=db, caches=caches, trial_id=done.next_trial.id, body=named)
    assert after.next_trial is not None and batches == [1]
    db.dispose()


@pytest.mark.postgres
def test_a_next_claim_with_a_used_request_id_is_left_to_the_general_path(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker's next claim reuses the key of the claim that got its trial: its guard
    fails the batch, which writes nothing; the general path completes the trial and replays
    that key's claim (its trial has ended: no next trial), so no second trial carries it."""
    url = _fresh(postgres_url, None, "")
    db, caches, worker, _held = _assumed_study(url)
    held = trials.claim(db=db, caches=caches, worker_id=worker, request_id="k1")
    assert held is not None
    with caplog.at_level(logging.DEBUG):
        done = trials.complete(
            db=db, caches=caches, trial_id=held.id, body=_complete_asking(worker, "k1")
        )
    assert done.state == TrialState.COMPLETE and done.next_trial is None
    assert [t["claim_request_id"] for t in _rows(url)["trials"]].count("k1") == 1
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    db.dispose()


@pytest.mark.postgres
def test_a_next_claim_naming_no_study_goes_to_the_general_path_once_another_runs(
    postgres_url: str,
) -> None:
    """Another server starts a second study: the batch's guard fails the next claim naming
    none, and the general path chooses the study; nothing is claimed twice."""
    url = _fresh(postgres_url, None, "")
    db, caches, worker, held = _assumed_study_then_a_second_elsewhere(url)
    done = trials.complete(
        db=db, caches=caches, trial_id=held.id, body=_complete_asking(worker, "n1")
    )
    assert done.state == TrialState.COMPLETE and done.next_trial is not None
    assert caches.claim_target(None) is None  # nothing is assumed about it now
    assert [t["claim_request_id"] for t in _rows(url)["trials"]].count("n1") == 1
    db.dispose()


@pytest.mark.postgres
def test_a_next_claim_sees_a_lease_that_ran_out(postgres_url: str) -> None:
    """Another worker's lease ran out with nothing written: the batch's guard fails the next
    claim, and the general path expires that trial before it claims."""
    url = _fresh(postgres_url, None, "")
    db, caches, worker, held = _assumed_study(url)
    other = workers.register(db=db, body=WorkerRegister(name="w2", host="h"))
    quiet = trials.claim(db=db, caches=caches, worker_id=other)
    assert quiet is not None
    with db.session(write=True) as session:
        session.get(Trial, quiet.id).lease_expires_at = utcnow() - timedelta(seconds=1)
    done = trials.complete(
        db=db, caches=caches, trial_id=held.id, body=_complete_asking(worker, "n1")
    )
    assert done.state == TrialState.COMPLETE and done.next_trial is not None
    with db.session() as session:
        assert session.get(Trial, quiet.id).state != TrialState.RUNNING.value
    db.dispose()


# -- the next claim decided in the transaction of the request that ends the trial (both) ----


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "thread"])
@pytest.mark.parametrize("kind", SPECS)
def test_next_claims_riding_on_hot_paths_write_what_the_general_path_writes(
    kind: str, lane: bool, database_url: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    """Reports that prune and completes carry the worker's next claim: decided in their own
    transaction on the hot paths, they hand out the same trials and write the same rows as
    the general path, which claims after the trial ends."""
    rides = request.getfixturevalue("next_claims_ridden")
    hot_run = _drive(database_url, SPECS[kind], next_claims=True, lane=lane)
    hot = _rows(database_url)
    assert rides, "no next claim was decided in the transaction that ended a trial"
    request.getfixturevalue("no_hot_paths")
    other = _fresh(database_url, tmp_path, "general")
    rides.clear()
    general_run = _drive(other, SPECS[kind], next_claims=True, lane=lane)
    assert not rides
    assert hot_run == general_run
    hot, general = _by_number(hot), _by_number(_rows(other))
    assert hot["studies"][0]["state"] == "completed"
    _assert_same_rows_but_seq(hot, general)  # one transaction where the general path has two


@pytest.fixture
def next_claims_ridden(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per next claim decided in the transaction of the request that carried it."""
    rides: list[int] = []
    real = hot_paths._claim_next_here

    def counting(*args: Any) -> Any:
        answer = real(*args)
        rides.append(answer[0].id)
        return answer

    monkeypatch.setattr(hot_paths, "_claim_next_here", counting)
    return rides


@pytest.fixture
def write_transactions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per write transaction a ``Database`` opens on a plain connection."""
    opened: list[int] = []
    real = Database.connection

    def counting(self: Database, **kwargs: Any) -> Any:
        if kwargs.get("write"):
            opened.append(1)
        return real(self, **kwargs)

    monkeypatch.setattr(Database, "connection", counting)
    return opened


def _report_asking(worker: int, request_id: str, value: float = 9.0) -> ReportRequest:
    return ReportRequest(
        worker_id=worker, step=1, value=value, next_claim=NextClaim(request_id=request_id)
    )


def _pruning_study(url: str) -> tuple[Database, StudyCaches, int, Any]:
    """A study whose pruner prunes a report above 5, with a trial held by the worker, claimed
    on the hot path (a first trial, claimed and completed, built the study's cache)."""
    db, caches = Database(url), StudyCaches()
    spec = make_spec(
        sampler={"name": "random", "seed": 5},
        pruner={"name": "threshold", "options": {"upper": 5.0}},
        budget={"max_trials": 10, "lease_seconds": 60},
    )
    studies.create_study(db=db, spec=StudySpec.model_validate(spec))
    worker = workers.register(db=db, body=WorkerRegister(name="w", host="h"))
    built = trials.claim(db=db, caches=caches, worker_id=worker, request_id="zeroth")
    assert built is not None
    done = CompleteRequest(worker_id=worker, values=[1.0])
    trials.complete(db=db, caches=caches, trial_id=built.id, body=done)
    held = trials.claim(db=db, caches=caches, worker_id=worker, request_id="first")
    assert held is not None and caches.claim_target(None) == held.study_id
    cache = caches.get(held.study_id)
    assert cache is not None
    cache.ask_times.extend([0.0] * 5)  # quick (its first sample may not be, on a busy machine)
    return db, caches, worker, held


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "thread"])
def test_the_report_that_prunes_claims_the_next_trial_in_its_own_transaction(
    lane: bool,
    database_url: str,
    tmp_path: Any,
    write_transactions: list[int],
    context_reads: list[int],
) -> None:
    """One write transaction prunes the trial and claims the next, with no context read; a
    retry of the report (its answer was lost) replays the same next trial."""
    db, caches, worker, held = _pruning_study(_fresh(database_url, tmp_path, "ride"))
    write_transactions.clear()
    context_reads.clear()
    body = _report_asking(worker, "n1")
    answer = _end(db, caches, held.id, body, lane=lane)
    assert answer.should_prune and answer.next_trial is not None
    assert (len(write_transactions), context_reads) == (1, [])
    assert caches.study_of_trial(answer.next_trial.id) == held.study_id
    with db.session() as session:
        nxt = session.get(Trial, answer.next_trial.id)
        assert (nxt.state, nxt.worker_id, nxt.claim_request_id) == ("running", worker, "n1")
        assert session.get(Trial, held.id).state == TrialState.PRUNED.value
    again = _end(db, caches, held.id, body, lane=lane)
    assert again.should_prune and again.next_trial is not None
    assert again.next_trial.id == answer.next_trial.id
    assert [t["claim_request_id"] for t in _rows(db.url)["trials"]].count("n1") == 1
    db.dispose()


def _in_one_transaction(db: Database, ended_id: int, next_id: int) -> bool:
    """Whether the trial that ended and the next one were written by one transaction: each
    decision writes the study's next seq into the trials it touches."""
    with db.session() as session:
        return bool(session.get(Trial, ended_id).seq == session.get(Trial, next_id).seq)


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "thread"])
def test_a_next_claim_that_may_not_ride_is_claimed_after_the_trial_ends(
    lane: bool, database_url: str, tmp_path: Any
) -> None:
    """What ``_CLAIM_CONTEXT`` and the lease check would refuse is not decided in the ending
    transaction: a request id already used (its trial has ended: no next trial), another
    worker's lease that ran out (the general path hands that trial out again first), a claim
    naming no study while two run."""
    db, caches, worker, held = _pruning_study(_fresh(database_url, tmp_path, "refused"))
    used = _end(db, caches, held.id, _report_asking(worker, "first"), lane=lane)
    assert used.should_prune and used.next_trial is None
    assert [t["claim_request_id"] for t in _rows(db.url)["trials"]].count("first") == 1
    ridden = trials.claim(db=db, caches=caches, worker_id=worker, request_id="ridden")
    assert ridden is not None  # an ordinary next claim rides, as a check of the check
    rides = _end(db, caches, ridden.id, _report_asking(worker, "rides"), lane=lane)
    assert rides.next_trial is not None
    assert _in_one_transaction(db, ridden.id, rides.next_trial.id)
    trials.complete(
        db=db,
        caches=caches,
        trial_id=rides.next_trial.id,
        body=CompleteRequest(worker_id=worker, values=[1.0]),
    )

    mine = trials.claim(db=db, caches=caches, worker_id=worker, request_id="second")
    other = workers.register(db=db, body=WorkerRegister(name="w2", host="h"))
    quiet = trials.claim(db=db, caches=caches, worker_id=other)
    assert mine is not None and quiet is not None
    with db.session(write=True) as session:
        session.get(Trial, quiet.id).lease_expires_at = utcnow() - timedelta(seconds=1)
    after_lease = _end(db, caches, mine.id, _report_asking(worker, "third"), lane=lane)
    assert after_lease.should_prune and after_lease.next_trial is not None
    assert not _in_one_transaction(db, mine.id, after_lease.next_trial.id)
    with db.session() as session:
        assert session.get(Trial, quiet.id).state != TrialState.RUNNING.value

    spec = make_spec(name="second", sampler={"name": "random", "seed": 6})
    studies.create_study(db=db, spec=StudySpec.model_validate(spec))
    two = _end(db, caches, after_lease.next_trial.id, _report_asking(worker, "fourth"), lane=lane)
    assert two.should_prune and two.next_trial is not None  # the general path chose a study
    assert not _in_one_transaction(db, after_lease.next_trial.id, two.next_trial.id)
    db.dispose()


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "thread"])
def test_a_next_claim_that_fails_once_sampled_leaves_the_trial_ended_and_claims_again(
    lane: bool, database_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sampler hands back something the hot claim cannot write after the cache moved on:
    the trial's end is stored all the same, the study's cache is dropped (rebuilt from the
    database), and the worker's next claim is made after the trial ended."""
    db, caches, worker, held = _pruning_study(_fresh(database_url, tmp_path, "stale"))
    cache = caches.get(held.study_id)
    assert cache is not None
    real_ask = cache.ask

    def asks_a_waiting_trial() -> Any:
        asked = real_ask()
        return None if asked is None else replace(asked, was_waiting=True)

    monkeypatch.setattr(cache, "ask", asks_a_waiting_trial)
    answer = _end(db, caches, held.id, _report_asking(worker, "n1"), lane=lane)
    assert answer.should_prune and answer.next_trial is not None
    assert caches.get(held.study_id) is not cache
    rows = sorted(_rows(db.url)["trials"], key=lambda t: t["number"])
    assert [t["state"] for t in rows] == ["complete", "pruned", "running"]
    assert [t["number"] for t in rows] == [0, 1, 2]
    assert rows[2]["claim_request_id"] == "n1" and rows[2]["id"] == answer.next_trial.id
    db.dispose()
