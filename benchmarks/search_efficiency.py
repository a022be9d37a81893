"""Search efficiency: training epochs until the best validation accuracy first reaches a target.

Digits (CNN, target 97%) and breast_cancer (MLP, target 98%), 20 epochs at most per trial.
Through the service (one ``hposvc server`` on SQLite, one ``hposvc worker --devices cpu
--slots-per-device 2``, so 2 slots of 1 torch thread): random search without pruning, random +
Hyperband, TPE + Hyperband, GP + Hyperband (samplers and pruners with the service's defaults,
sampler seeded per run). In process: plain Optuna ``study.optimize`` with ``TPESampler(seed)``
and ``MedianPruner()`` (Optuna's defaults), running the same training core
(``workers.training.runner.run_trial``, a reporter that calls ``trial.report`` and
``trial.should_prune``), one trial at a time, 1 torch thread.

Epochs are counted from the trials' intermediate values (one report per epoch: a trial's
``last_step``), summed over finished trials in completion order up to and including the first
complete trial whose value reaches the target. A run stops as soon as that happens (the
service's study is stopped; trials still running then finish but do not count) or after a cap
on trials. Median over seeds.

    .venv/bin/python benchmarks/search_efficiency.py [--quick] [--seeds 5] [--no-write]

Target (issue): TPE + Hyperband through the service reaches the target with <= 1/3 of the
epochs of random search without pruning, and no more epochs than plain Optuna in process.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import database, machine, server, write_section  # noqa: E402
from benchmarks.short_trials import (  # noqa: E402
    create_study,
    fetch_trials,
    parse_time,
    worker_process,
)

MAX_EPOCHS = 20
PROBLEMS: dict[str, dict[str, Any]] = {
    "digits CNN": {
        "target": 0.97,
        "training": {"dataset": "digits", "model": "cnn"},
        "space": {
            "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
            "channels": {"type": "categorical", "choices": [8, 16, 32]},
            "dropout": {"type": "float", "low": 0.0, "high": 0.5},
        },
    },
    "breast_cancer MLP": {
        "target": 0.98,
        "training": {"dataset": "breast_cancer", "model": "mlp"},
        "space": {
            "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
            "width": {"type": "int", "low": 16, "high": 128, "log": True},
            "layers": {"type": "int", "low": 1, "high": 3},
            "dropout": {"type": "float", "low": 0.0, "high": 0.5},
        },
    },
}
SERVICE_METHODS = {
    "random, no pruning": ("random", "none"),
    "random + Hyperband": ("random", "hyperband"),
    "TPE + Hyperband": ("tpe", "hyperband"),
    "GP + Hyperband": ("gp", "hyperband"),
}
OPTUNA_METHOD = "plain Optuna in process: TPE + median"


def training(problem: dict[str, Any]) -> dict[str, Any]:
    return {
        **problem["training"],
        "max_epochs": MAX_EPOCHS,
        "batch_size": 64,
        "objective": "val_accuracy",
        "seed": 0,
    }


def epochs_to_target(finished: list[tuple[float, int, str, float | None]], target: float):
    """(epochs, reached) from (finish time, epochs, state, value) of finished trials."""
    total = 0
    for _, epochs, state, value in sorted(finished, key=lambda f: f[0]):
        total += epochs
        if state == "complete" and value is not None and value >= target - 1e-9:
            return total, True
    return total, False


# -- through the service -------------------------------------------------------------------


def service_run(
    base: str, name: str, problem: dict[str, Any], sampler: str, pruner: str, seed: int, cap: int
) -> dict[str, Any]:
    spec = {
        "name": name,
        "objectives": [{"name": "val_accuracy", "direction": "maximize"}],
        "search_space": problem["space"],
        "sampler": {"name": sampler, "seed": seed},
        "pruner": {"name": pruner},
        "budget": {"max_trials": cap, "lease_seconds": 300},
        "training": training(problem),
    }
    started = time.perf_counter()
    create_study(base, spec)
    with httpx.Client(base_url=f"{base}/api/v1", timeout=120) as http:
        stopped = False
        while True:
            summary = http.get(f"/studies/{name}").json()
            best = summary.get("best_trial")
            reached = best is not None and best["values"][0] >= problem["target"] - 1e-9
            if reached and not stopped and summary["state"] == "running":
                http.post(f"/studies/{name}/actions", json={"action": "stop"})
                stopped = True
            if summary["state"] != "running" and not summary["counts"].get("running"):
                break
            time.sleep(0.2)
    wall = time.perf_counter() - started
    trials = fetch_trials(base, name)
    finished = [
        (
            parse_time(t["finished_at"]),
            t["last_step"] or 0,
            t["state"],
            t["values"][0] if t["values"] else None,
        )
        for t in trials
        if t["finished_at"]
    ]
    epochs, reached = epochs_to_target(finished, problem["target"])
    return {"epochs": epochs, "reached": reached, "trials": len(trials), "wall": wall}


# -- plain Optuna in process ---------------------------------------------------------------


class _Reporter:
    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def report(self, step: int, value: float) -> bool:
        self.trial.report(value, step)
        return self.trial.should_prune()


def optuna_run(problem: dict[str, Any], seed: int, cap: int) -> dict[str, Any]:
    import optuna

    from hposvc.samplers.distributions import suggest
    from hposvc.schemas.search_space import SearchSpace
    from workers.training.runner import run_trial

    space = SearchSpace.model_validate(problem["space"]).ordered()
    cfg = training(problem)
    target = problem["target"]

    def objective(trial: optuna.Trial) -> float:
        params = {name: suggest(trial, name, p) for name, p in space}
        result = run_trial(cfg, params, _Reporter(trial), None, "cpu")
        if result.stopped == "pruned":
            raise optuna.TrialPruned
        return result.values[0]

    def stop_at_target(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.value >= target - 1e-9:
            study.stop()

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(),
    )
    started = time.perf_counter()
    study.optimize(objective, n_trials=cap, callbacks=[stop_at_target])
    wall = time.perf_counter() - started
    finished = [
        (
            t.datetime_complete.timestamp() if t.datetime_complete else t.number,
            len(t.intermediate_values),
            t.state.name.lower(),
            t.value,
        )
        for t in study.trials
        if t.state.is_finished()
    ]
    epochs, reached = epochs_to_target(finished, target)
    return {"epochs": epochs, "reached": reached, "trials": len(study.trials), "wall": wall}


# -- report --------------------------------------------------------------------------------


def _median(runs: list[dict[str, Any]]) -> float:
    """Median epochs over seeds; a run that never reached the target counts as infinite."""
    return statistics.median(r["epochs"] if r["reached"] else math.inf for r in runs)


def _fmt(value: float) -> str:
    return "not reached" if math.isinf(value) else f"{value:g}"


def _ratio(a: float, b: float) -> str:
    return "n/a" if math.isinf(a) or math.isinf(b) else f"{a / b:.2f}"


def command() -> str:
    """This run's command line, as typed from the repository root."""
    return " ".join([".venv/bin/python", f"benchmarks/{Path(__file__).name}", *sys.argv[1:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 30 trials at most")
    parser.add_argument("--seeds", type=int, default=None, help="default 5 (quick: 2)")
    parser.add_argument("--cap", type=int, default=None, help="trials per run (default 100)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    seeds = list(range(args.seeds or (2 if args.quick else 5)))
    cap = args.cap or (30 if args.quick else 100)
    import optuna
    import torch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="hposvc-search-efficiency-"))
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def note(problem: str, method: str, seed: int, r: dict[str, Any]) -> None:
        runs.setdefault((problem, method), []).append(r)
        print(  # noqa: T201
            f"{problem} | {method} | seed {seed}: {r['epochs']} epochs, "
            f"{'reached' if r['reached'] else 'NOT reached'}, {r['trials']} trials, "
            f"{r['wall']:.1f} s",
            flush=True,
        )

    with database("sqlite") as url, server(url) as base:
        with worker_process(
            base,
            "--devices",
            "cpu",
            "--slots-per-device",
            "2",
            log=work / "worker.log",
            env={"HPOSVC_WORKER_POLL_SECONDS": "0.2"},
        ):
            for p_index, (problem_name, problem) in enumerate(PROBLEMS.items()):
                for m_index, (method, (sampler, pruner)) in enumerate(SERVICE_METHODS.items()):
                    for seed in seeds:
                        name = f"eff-{p_index}-{m_index}-{seed}"
                        r = service_run(base, name, problem, sampler, pruner, seed, cap)
                        note(problem_name, method, seed, r)
    for problem_name, problem in PROBLEMS.items():
        for seed in seeds:
            note(problem_name, OPTUNA_METHOD, seed, optuna_run(problem, seed, cap))

    lines = [
        f"Command: `{command()}`  ",
        f"Machine: {machine()}  ",
        f"Seeds: {len(seeds)}; at most {cap} trials per run; {MAX_EPOCHS} epochs at most per "
        "trial; worker log: " + f"`{work}/worker.log`",
        "",
        "Epochs until the best validation accuracy first reaches the target (median over "
        'seeds; "not reached" = not within the trial cap, counted as infinite for the '
        "median). The targets are within reach of a single good trial, so with few seeds the "
        "medians are dominated by whether one of the first (random) trials is lucky: read "
        "quick-mode figures as noise, use 5+ seeds for the comparison.",
        "",
        "| problem (target) | method | median epochs | per seed | trials per run | wall s per "
        "run |",
        "|---|---|---:|---|---|---|",
    ]
    verdicts = []
    for problem_name, problem in PROBLEMS.items():
        for method in [*SERVICE_METHODS, OPTUNA_METHOD]:
            rs = runs[(problem_name, method)]
            per_seed = ", ".join(f"{r['epochs']}{'' if r['reached'] else '+'}" for r in rs)
            lines.append(
                f"| {problem_name} ({problem['target']:.0%}) | {method} | "
                f"**{_fmt(_median(rs))}** | {per_seed} | "
                f"{', '.join(str(r['trials']) for r in rs)} | "
                + ", ".join(f"{r['wall']:.1f}" for r in rs)
                + " |"
            )
        tpe = _median(runs[(problem_name, "TPE + Hyperband")])
        rnd = _median(runs[(problem_name, "random, no pruning")])
        opt = _median(runs[(problem_name, OPTUNA_METHOD)])
        verdicts.append(
            f"- {problem_name}: TPE + Hyperband / random without pruning = "
            f"{_fmt(tpe)} / {_fmt(rnd)} = **{_ratio(tpe, rnd)}** (target <= 0.33); "
            f"TPE + Hyperband / plain Optuna TPE + median = {_fmt(tpe)} / {_fmt(opt)} = "
            f"**{_ratio(tpe, opt)}** (target <= 1)"
        )
    lines += [
        "",
        *verdicts,
        "",
        "A `+` after a seed's figure: the target was not reached within the cap (the figure is "
        "every epoch spent). The service runs 2 trials at a time, so a sampler there decides "
        "with up to one trial still running; plain Optuna runs one at a time.",
    ]
    body = "\n".join(lines)
    print(body)  # noqa: T201
    if not args.no_write:
        write_section("Search efficiency", body)


if __name__ == "__main__":
    main()
