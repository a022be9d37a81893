"""Dispatch throughput and latency: hposvc over HTTP against plain Optuna with RDBStorage.

K worker processes loop claim -> 10 reports -> complete (an instant objective) against a
real ``hposvc server``, as the worker's slots do: the report that prunes a trial and the
complete carry the worker's next claim, so the claim rides on their answer (a claim of its
own goes out first, and when such an answer brings no trial). In the same run, K processes
loop ask -> 10 x (report + should_prune) -> tell on Optuna's RDBStorage on the same kind of
database, with the same sampler and pruner.

    .venv/bin/python -m benchmarks.dispatch --quick          # K = 4, 120 trials per run
    .venv/bin/python -m benchmarks.dispatch --workers 4 --repeat 3   # the target's rows

``--repeat N`` runs each row's pair (hposvc, then Optuna) N times and shows the median ratio:
on a shared machine a single pair's ratio moves by a third between runs.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from typing import Any

import httpx

from benchmarks.common import database, machine, percentiles, server, write_section

STEPS = 10
GRID_A, GRID_B = 10, 10


def _space_spec(sampler: str) -> dict[str, Any]:
    if sampler == "grid":
        return {
            "a": {"type": "int", "low": 0, "high": GRID_A - 1},
            "b": {"type": "int", "low": 0, "high": GRID_B - 1},
        }
    return {
        "a": {"type": "float", "low": 0.0, "high": 1.0},
        "b": {"type": "float", "low": 0.0, "high": 1.0},
    }


def _value(a: float, b: float, step: int) -> float:
    return (a - 0.3) ** 2 + (b - 0.6) ** 2 + 1.0 / step


# -- hposvc -------------------------------------------------------------------------------


def _service_worker(url: str, index: int, out: Any, start: Any) -> None:
    """A worker as the daemon's slots talk to the server: through ``workers.client``, the
    next claim sent with the report that prunes or the complete (``NextClaim``)."""
    from hposvc.schemas.trials import NextClaim
    from hposvc.schemas.workers import WorkerRegister
    from workers.client import ServerClient

    lat: dict[str, list[float]] = {"claim": [], "report": [], "complete": []}
    points = []
    client = ServerClient(url)
    worker = client.register(WorkerRegister(name=f"bench-{index}", host="bench"))
    start.wait()
    trial = None
    while True:
        key = uuid.uuid4().hex
        if trial is None:
            t0 = time.perf_counter()
            trial = client.claim(worker, None, key)
            lat["claim"].append(time.perf_counter() - t0)
            if trial is None:
                break
            key = uuid.uuid4().hex
        a, b = trial.params["a"], trial.params["b"]
        points.append((a, b))
        nxt = NextClaim(request_id=key)
        for step in range(1, STEPS + 1):
            t0 = time.perf_counter()
            pruned, next_trial = client.report_then_claim(
                trial.id, worker, step, _value(a, b, step), nxt
            )
            lat["report"].append(time.perf_counter() - t0)
            if pruned:
                break
        else:
            t0 = time.perf_counter()
            next_trial = client.complete(trial.id, worker, [_value(a, b, STEPS)], {}, nxt)
            lat["complete"].append(time.perf_counter() - t0)
        trial = next_trial
    client.close()
    out.put((lat, points))


def _service_worker_of(bases: list[str], index: int, out: Any, start: Any) -> None:
    """Worker ``index`` of several servers: it talks to server ``index % len(bases)``, as
    workers keeping their connections behind a load balancer do."""
    _service_worker(bases[index % len(bases)], index, out, start)


def run_service(
    db_kind: str, sampler: str, k: int, n_trials: int, servers: int = 1
) -> dict[str, Any]:
    with database(db_kind) as url, ExitStack() as stack:
        bases = [stack.enter_context(server(url)) for _ in range(servers)]
        spec = {
            "name": "bench",
            "objectives": [{"name": "loss", "direction": "minimize"}],
            "search_space": _space_spec(sampler),
            "sampler": {"name": sampler, "seed": 1},
            "pruner": {"name": "median", "options": {"n_startup_trials": 5}},
            "budget": {"max_trials": n_trials, "lease_seconds": 600},
        }
        assert httpx.post(f"{bases[0]}/api/v1/studies", json=spec).status_code == 201
        kinds = ("claim", "report", "complete")
        return _run_processes(_service_worker_of, bases, k, kinds)


# -- plain Optuna -------------------------------------------------------------------------


def _optuna_sampler(name: str, seed: int) -> Any:
    import optuna

    if name == "grid":  # each process its own seed, as independent workers would have
        space = {"a": list(range(GRID_A)), "b": list(range(GRID_B))}
        return optuna.samplers.GridSampler(space, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler()
    return optuna.samplers.RandomSampler()


def _optuna_worker(args: tuple[str, str, int], index: int, out: Any, start: Any) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url, sampler_name, per_worker = args
    study = optuna.load_study(
        study_name="bench",
        storage=url,
        sampler=_optuna_sampler(sampler_name, seed=index),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5),
    )
    lat: dict[str, list[float]] = {"ask": [], "report": [], "tell": []}
    points = []
    start.wait()
    for _ in range(per_worker):
        t0 = time.perf_counter()
        trial = study.ask()
        if sampler_name == "grid":
            a = trial.suggest_int("a", 0, GRID_A - 1)
            b = trial.suggest_int("b", 0, GRID_B - 1)
        else:
            a = trial.suggest_float("a", 0.0, 1.0)
            b = trial.suggest_float("b", 0.0, 1.0)
        lat["ask"].append(time.perf_counter() - t0)
        points.append((a, b))
        state = optuna.trial.TrialState.COMPLETE
        for step in range(1, STEPS + 1):
            t0 = time.perf_counter()
            trial.report(_value(a, b, step), step)
            pruned = trial.should_prune()
            lat["report"].append(time.perf_counter() - t0)
            if pruned:
                state = optuna.trial.TrialState.PRUNED
                break
        t0 = time.perf_counter()
        try:
            if state == optuna.trial.TrialState.PRUNED:
                study.tell(trial, state=state)
            else:
                study.tell(trial, _value(a, b, STEPS))
        except RuntimeError:
            # GridSampler.after_trial calls study.stop() once the grid is used up, which raises
            # outside optimize(); the trial's state is written all the same.
            pass
        lat["tell"].append(time.perf_counter() - t0)
    out.put((lat, points))


def run_optuna(db_kind: str, sampler: str, k: int, n_trials: int) -> dict[str, Any]:
    import optuna

    with database(db_kind) as url:
        storage = optuna.storages.RDBStorage(url.replace("+psycopg", "+psycopg"))
        optuna.create_study(study_name="bench", storage=storage)
        del storage
        per_worker = max(1, n_trials // k)
        return _run_processes(
            _optuna_worker, (url, sampler, per_worker), k, ("ask", "report", "tell")
        )


# -- shared -------------------------------------------------------------------------------


def _run_processes(target: Any, arg: Any, k: int, kinds: tuple[str, ...]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    ready = ctx.Barrier(k + 1)  # timing starts once every process has imported and connected
    procs = [ctx.Process(target=target, args=(arg, i, out, ready)) for i in range(k)]
    for p in procs:
        p.start()
    ready.wait(timeout=300)
    start = time.perf_counter()
    results = [out.get(timeout=900) for _ in procs]
    elapsed = time.perf_counter() - start
    for p in procs:
        p.join()
    lat = {kind: [x for r in results for x in r[0][kind]] for kind in kinds}
    points = [p for r in results for p in r[1]]
    duplicates = sum(c - 1 for c in Counter(points).values())
    return {
        "trials": len(points),
        "seconds": elapsed,
        "rate": len(points) / elapsed,
        "latency": {kind: percentiles(v) for kind, v in lat.items()},
        "duplicates": duplicates,
    }


def _row(db_kind: str, sampler: str, k: int, pairs: list[tuple[dict, dict]], load: float) -> str:
    """One table row from ``pairs`` of (hposvc, Optuna) runs made one after the other: the
    median of the pairs' ratios, and the latencies of the pair that has it."""
    ratios = [svc["rate"] / opt["rate"] for svc, opt in pairs]
    svc, opt = sorted(pairs, key=lambda pair: pair[0]["rate"] / pair[1]["rate"])[len(pairs) // 2]
    latencies = [
        " / ".join(f"{p50:.1f}/{p95:.1f}/{p99:.1f}" for p50, p95, p99 in run["latency"].values())
        for run in (svc, opt)
    ]
    duplicates = [sum(run["duplicates"] for run in side) for side in zip(*pairs, strict=True)]
    return (
        f"| {db_kind} | {sampler} | {k} | {svc['rate']:.1f} | {opt['rate']:.1f} | "
        f"**{statistics.median(ratios):.1f}×** | "
        + ", ".join(f"{r:.1f}" for r in ratios)
        + f" | {latencies[0]} | {latencies[1]} | {duplicates[0]} / {duplicates[1]} | {load:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials (minutes, not hours)")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--samplers", default="random,grid,tpe")
    parser.add_argument(
        "--workers", default=None, help="K values (default 1,4,16; quick: 4, the target's K)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="pairs of runs per row (the median ratio is shown)"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    n_trials = 120 if args.quick else 1000
    workers = args.workers or ("4" if args.quick else "1,4,16")
    rows = []
    for db_kind in args.databases.split(","):
        for sampler in args.samplers.split(","):
            for k in (int(x) for x in workers.split(",")):
                n = GRID_A * GRID_B if sampler == "grid" else n_trials
                load = os.getloadavg()[0]  # the machine is shared: both sides ran under it
                pairs = [
                    (run_service(db_kind, sampler, k, n), run_optuna(db_kind, sampler, k, n))
                    for _ in range(args.repeat)
                ]
                row = _row(db_kind, sampler, k, pairs, load)
                print(row, flush=True)  # noqa: T201
                rows.append(row)
    header = (
        "| database | sampler | K | hposvc trials/s | Optuna trials/s | ratio | ratio per pair "
        "of runs | hposvc claim / report / complete ms (p50/p95/p99) | Optuna ask / "
        "report+should_prune / tell ms (p50/p95/p99) | duplicate points hposvc / Optuna | "
        "load (1 min) |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    repeat = f" --repeat {args.repeat}" if args.repeat > 1 else ""
    body = (
        f"Command: `.venv/bin/python -m benchmarks.dispatch{' --quick' if args.quick else ''}"
        f"{repeat}`  \n"
        f"Machine: {machine()}  \n"
        f"Each trial: claim, {STEPS} reports (median pruner, 5 startup trials), complete, "
        f"instant objective; {n_trials} trials per run (grid: {GRID_A * GRID_B} points). "
        f"Each row: {args.repeat} pair(s) of runs, hposvc then Optuna, one after the other; the "
        "ratio is the median of the pairs' ratios (the machine's speed drifts between pairs, "
        "far less within one), and the trials/s and latencies are those of the pair with that "
        "ratio; duplicate points are summed over the pairs. "
        "hposvc's workers send their next claim with the report that prunes and with the "
        "complete, as the worker's slots do: the claim column holds only the claims made on "
        "their own (each worker's first, and after an answer with no trial); the others are in "
        "the report and complete latencies. "
        "Optuna: one `load_study` per process (its own sampler instance; the grid sampler seeded "
        "with the process index, as independent workers would be), "
        "RDBStorage on the same kind of database.\n\n" + header + "\n" + "\n".join(rows)
    )
    if not args.no_write:
        write_section("Dispatch throughput and latency", body)


if __name__ == "__main__":
    main()
