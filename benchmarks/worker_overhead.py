"""Worker overhead: a slot's idle time around trials, and the share of wall time not training.

Part 1 (idle gaps). A real ``hposvc server`` (SQLite) and a fresh ``hposvc worker --devices cpu
--slots-per-device 1 --log-level DEBUG`` run a digits MLP study (random sampler, no pruner,
N trials x E epochs). From the trials' server timestamps (``started_at`` = claim answered,
``finished_at`` = complete answered), ``user_attrs.history`` (each epoch's ``train_seconds``
and ``validation_seconds``, as ``fit()`` times its training and validation phases) and the
slot's DEBUG log (a timestamped line after each epoch's validation, just before the report):

- gap: complete answered -> next claim answered, on the slot;
- start: claim answered -> end of epoch 1's validation, minus epoch 1's training and validation
  (config, dataset from the per-process cache, model build, optimizer; the first trial of a fresh
  slot also imports the training core and loads the dataset);
- between epochs: epoch k's log line -> epoch k+1's, minus epoch k+1's training and validation
  (report, checkpoint);
- end: last epoch's log line -> complete answered (last report and checkpoint, test evaluation,
  model upload, complete).

Part 2 (non-training share). The "digits MLP study shape" (T trials x 10 epochs, TPE + median
pruner), through the service on SQLite and on PostgreSQL (server + one warm worker slot with
``--threads-per-slot 1``, INFO logging), and with plain Optuna ``study.optimize`` in process
(in-memory; in full mode SQLite RDB and PostgreSQL RDB too, for the first seed) running the
same training core (``workers.training.runner.run_trial`` with a reporter that calls
``trial.report`` / ``trial.should_prune``), the same sampler and pruner objects the server
builds, 1 torch thread.
One torch thread because this model trains faster on it than on 2 (on this machine, quiet, at
batch size 16: 23 ms per epoch on 1 thread, 29 ms on 2, which keep both cores busy), and
because it leaves the server a core of its own, as a deployment's server has; the same shape
with 2 torch threads, where the server competes with the training for the 2 cores, is
measured too in full mode (service on SQLite and plain Optuna in-memory). Training = the work
of the user's training loop: the sum over every reported epoch of its training phase and its
validation, as ``fit()`` times them inside the training core (``history[].train_seconds +
validation_seconds``), the same numbers for the service and for the plain-Optuna objective.
Everything else is non-training: sampling and claims, reports and prune decisions,
checkpoints, model build, test evaluation, model upload, complete, HTTP, database.
Non-training share = 1 - training / wall. Each runs for several sampler seeds (1-2 quick,
1-5 full), and plain Optuna's TPE is reseeded before each trial as the service's study cache
reseeds it, so for a seed both sides train the same trials (the same epochs, pruned at the same
steps). A seed's mix of pruned and completed trials sets how much training a trial has, and so
the share the same milliseconds make: one seed's mix (seed 1: 24 of 30 trials pruned within 4
epochs) can double it. The target is read over the seeds together (their non-training time over
their wall). Both sides start warm (training core imported, digits loaded once); the
service runs a database's seeds as studies one after the other on one server and worker. The
service's wall runs from the study's first claim to its last trial's end, Optuna's is
``study.optimize``.

Shape: digits (1,078 training rows) at batch size 8, so an epoch of the median MLP of the
search space (2 layers x 64) is ~44 ms of training and validation on 1 thread (measured quiet:
43.5 ms; 53 ms on 2 threads): the issue's "epochs of ~50 ms". A fixed batch size keeps each
epoch's work the same for every run.

    .venv/bin/python benchmarks/worker_overhead.py [--quick] [--no-write]

Target (issue): <= 3% for the service; measured there for plain Optuna: in-memory 1.6%,
SQLite 24%, PostgreSQL 30%.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
import zlib
from collections import Counter
from datetime import datetime
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

SEARCH_SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "width": {"type": "int", "low": 16, "high": 256, "log": True},
    "layers": {"type": "int", "low": 1, "high": 3},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
}
THREADS = 1  # torch threads of the slot and of the plain-Optuna objective (see above)
BATCH_SIZE = 8  # ~135 steps per digits epoch: epochs of ~45 ms, the shape


def training(epochs: int) -> dict[str, Any]:
    return {
        "dataset": "digits",
        "model": "mlp",
        "max_epochs": epochs,
        "batch_size": BATCH_SIZE,
        "objective": "val_accuracy",
    }


def spec(
    name: str, sampler: str, pruner: str, trials: int, epochs: int, seed: int = 1
) -> dict[str, Any]:
    return {
        "name": name,
        "objectives": [{"name": "val_accuracy", "direction": "maximize"}],
        "search_space": SEARCH_SPACE,
        "sampler": {"name": sampler, "seed": seed},
        "pruner": {"name": "median", "options": {"n_startup_trials": 5}}
        if pruner == "median"
        else {"name": "none"},
        "budget": {"max_trials": trials, "lease_seconds": 300},
        "training": training(epochs),
    }


def wait_done(base: str, name: str, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = httpx.get(f"{base}/api/v1/studies/{name}", timeout=60).json()["state"]
        if state in ("completed", "stopped"):
            return
        time.sleep(1.0)  # rarely: the poll is work for the server the share would count
    raise TimeoutError(f"study {name} did not finish in {timeout} s")


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- part 1: idle gaps ---------------------------------------------------------------------

_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) ([\w.]+): (.*)$")
_TRIAL = re.compile(r"slot \d+: trial (\d+) \(study (\S+), attempt")
_EPOCH = re.compile(r"epoch (\d+): train_loss")


def epoch_log_times(log: Path, study: str) -> dict[int, dict[int, float]]:
    """{trial number: {epoch: time of its log line}} from a one-slot worker's DEBUG log."""
    out: dict[int, dict[int, float]] = {}
    current: int | None = None
    for line in log.read_text(errors="replace").splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        stamp, _level, logger, message = m.groups()
        t = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()  # local, like asctime
        if logger == "workers.slot" and (mt := _TRIAL.match(message)):
            current = int(mt.group(1)) if mt.group(2) == study else None
        elif logger == "workers.training.loop" and current is not None:
            if me := _EPOCH.match(message):
                out.setdefault(current, {})[int(me.group(1))] = t
    return out


def idle_gaps(n_trials: int, epochs: int, work: Path) -> dict[str, Any]:
    name = "overhead-gaps"
    log = work / "gaps_worker.log"
    with database("sqlite") as url, server(url) as base:
        create_study(base, spec(name, "random", "none", n_trials, epochs))
        with worker_process(
            base,
            "--devices",
            "cpu",
            "--slots-per-device",
            "1",
            "--exit-when-idle",
            "2",
            "--log-level",
            "DEBUG",
            log=log,
        ) as proc:
            proc.wait(timeout=900)
        trials = sorted(fetch_trials(base, name), key=lambda t: parse_time(t["started_at"]))
    logged = epoch_log_times(log, name)
    gaps, starts, betweens, ends = [], [], [], []
    first_start = None
    for i, t in enumerate(trials):
        claim, done = parse_time(t["started_at"]), parse_time(t["finished_at"])
        if i + 1 < len(trials):
            gaps.append(parse_time(trials[i + 1]["started_at"]) - done)
        history = t["user_attrs"]["history"]
        marks = logged.get(t["number"], {})
        if not marks or 1 not in marks:
            continue
        start = marks[1] - claim - _epoch_seconds(history[0])
        if i == 0:
            first_start = start
        else:
            starts.append(start)
        for h in history[1:]:
            k = int(h["epoch"])
            if k in marks and k - 1 in marks:
                betweens.append(marks[k] - marks[k - 1] - _epoch_seconds(h))
        ends.append(done - marks[max(marks)])
    epoch_train = [_epoch_seconds(h) for t in trials for h in t["user_attrs"]["history"]]
    return {
        "trials": len(trials),
        "gap": gaps,
        "first_start": first_start,
        "start": starts,
        "between": betweens,
        "end": ends,
        "epoch_train": epoch_train,
    }


# -- part 2: non-training share ------------------------------------------------------------


def service_share(
    db_kind: str, n_trials: int, epochs: int, work: Path, threads: int, seed: int
) -> dict[str, Any]:
    return service_shares(db_kind, n_trials, epochs, work, threads, [seed])[0]


def service_shares(
    db_kind: str, n_trials: int, epochs: int, work: Path, threads: int, seeds: list[int]
) -> list[dict[str, Any]]:
    """One study per seed, one after the other, on one server and one warm worker."""
    results = []
    with database(db_kind) as url, server(url) as base:
        # Warm the slot: the first trial of a fresh slot imports the training core and loads
        # digits; a long-running worker pays that once, not per study.
        create_study(base, spec("warm-up", "random", "none", 1, 1))
        with worker_process(
            base,
            "--devices",
            "cpu",
            "--slots-per-device",
            "1",
            "--threads-per-slot",
            str(threads),
            log=work / f"share_{db_kind}_{threads}_worker.log",
            env={"HPOSVC_WORKER_POLL_SECONDS": "0.2"},
        ):
            wait_done(base, "warm-up")
            for seed in seeds:
                name = f"shape-{db_kind}-{threads}-{seed}"
                create_study(base, spec(name, "tpe", "median", n_trials, epochs, seed))
                wait_done(base, name)
                trials = fetch_trials(base, name)
                first = min(parse_time(t["started_at"]) for t in trials)
                last = max(parse_time(t["finished_at"]) for t in trials if t["finished_at"])
                histories = [t["user_attrs"].get("history", []) for t in trials]
                share = _share(last - first, histories, trials=len(trials), states=_states(trials))
                results.append(share)
    return results


def _states(trials: list[dict[str, Any]]) -> Counter[str]:
    """How many trials ended in each state."""
    return Counter(t["state"] for t in trials)


def _states_text(counts: Counter[str]) -> str:
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))


def _epoch_seconds(h: dict[str, Any]) -> float:
    """An epoch's training: its training phase plus its validation, as fit() timed them."""
    return h["train_seconds"] + h["validation_seconds"]


def _share(wall: float, histories: list[list[dict[str, Any]]], **extra: Any) -> dict[str, Any]:
    train = sum(_epoch_seconds(h) for hist in histories for h in hist)
    epochs = sum(len(hist) for hist in histories)
    return {"wall": wall, "train": train, "epochs": epochs, "share": 1 - train / wall, **extra}


def _with_pooled(
    runs: list[tuple[str, int, dict[str, Any]]],
) -> list[tuple[str, int | str, dict[str, Any]]]:
    """Each run's rows by seed, then, for a run with several seeds, their sum as seed "all"."""
    rows: list[tuple[str, int | str, dict[str, Any]]] = []
    for label in dict.fromkeys(label for label, _, _ in runs):
        mine = [(seed, r) for lab, seed, r in runs if lab == label]
        rows += [(label, seed, r) for seed, r in mine]
        if len(mine) > 1:
            wall = sum(r["wall"] for _, r in mine)
            train = sum(r["train"] for _, r in mine)
            pooled = {
                "wall": wall,
                "train": train,
                "epochs": sum(r["epochs"] for _, r in mine),
                "trials": sum(r["trials"] for _, r in mine),
                "share": 1 - train / wall,
                "states": sum((r["states"] for _, r in mine), Counter()),
            }
            rows.append((label, "all", pooled))
    return rows


def _same_trials(rows: list[tuple[str, int | str, dict[str, Any]]]) -> str:
    """For how many seeds the service and plain Optuna in memory trained the same epochs."""
    one = f", {THREADS} thread"
    optuna = {
        seed: r["epochs"]
        for label, seed, r in rows
        if seed != "all" and label == f"plain Optuna `study.optimize`, in-memory{one}"
    }
    counts = []
    for label in dict.fromkeys(lab for lab, _, _ in rows if lab.startswith("hposvc")):
        if not label.endswith(one):
            continue
        mine = {seed: r["epochs"] for lab, seed, r in rows if lab == label and seed != "all"}
        same = sum(optuna.get(seed) == epochs for seed, epochs in mine.items())
        counts.append(f"{label.split(', ')[1].split(' ')[0]} {same} of {len(mine)}")
    return (
        "Seeds whose trials trained the same epochs in the service and in plain Optuna in "
        f"memory: {', '.join(counts)}."
    )


class _OptunaReporter:
    """The objective's reporter: trial.report + trial.should_prune after every epoch."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def report(self, step: int, value: float) -> bool:
        self.trial.report(value, step)
        return self.trial.should_prune()


def optuna_share(
    storage_kind: str, n_trials: int, epochs: int, threads: int, seed: int
) -> dict[str, Any]:
    import optuna
    import torch

    from hposvc.samplers.cache import _reseed
    from hposvc.samplers.distributions import suggest
    from hposvc.samplers.registry import build_pruner, build_sampler
    from hposvc.schemas.studies import StudySpec
    from workers.training.data import clear_cache
    from workers.training.runner import run_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(threads)
    study_spec = StudySpec.model_validate(spec("plain", "tpe", "median", n_trials, epochs, seed))
    space = study_spec.search_space.ordered()
    cfg = training(epochs)
    clear_cache()
    run_trial(training(1), {}, _NullReporter(), None, "cpu")  # warm, like the service's slot
    histories: list[list[dict[str, Any]]] = []

    def objective(trial: optuna.Trial) -> float:
        params = {name: suggest(trial, name, p) for name, p in space}
        result = run_trial(cfg, params, _OptunaReporter(trial), None, "cpu")
        histories.append(result.history)
        if result.stopped == "pruned":
            raise optuna.TrialPruned
        return result.values[0]

    def reseed(study: optuna.Study, number: int) -> None:  # as the service's study cache does
        _reseed(study.sampler, zlib.crc32(f"{seed}:{number}".encode()))

    def run(storage: Any) -> dict[str, Any]:
        study = optuna.create_study(
            storage=storage,
            direction="maximize",
            sampler=build_sampler(study_spec),
            pruner=build_pruner(study_spec),
        )
        started = time.perf_counter()
        reseed(study, 0)
        study.optimize(
            objective,
            n_trials=n_trials,
            callbacks=[lambda study, trial: reseed(study, trial.number + 1)],
        )
        wall = time.perf_counter() - started
        states = _states([{"state": t.state.name.lower()} for t in study.trials])
        return _share(wall, histories, trials=len(study.trials), states=states)

    if storage_kind == "in-memory":
        return run(None)
    with database(storage_kind) as url:
        return run(optuna.storages.RDBStorage(url))


class _NullReporter:
    def report(self, step: int, value: float) -> bool:  # noqa: ARG002
        return False


# -- report --------------------------------------------------------------------------------


def command() -> str:
    """This run's command line, as typed from the repository root."""
    return " ".join([".venv/bin/python", f"benchmarks/{Path(__file__).name}", *sys.argv[1:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer trials in part 1, seeds 1-2 in part 2 (full: 1-5), no RDBStorage or "
        "2-thread rows",
    )
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    gap_trials, gap_epochs = (6, 5) if args.quick else (20, 5)
    shape_trials, shape_epochs = 30, 10
    databases = args.databases.split(",")
    work = Path(tempfile.mkdtemp(prefix="hposvc-worker-overhead-"))
    load_before = os.getloadavg()[0]

    g = idle_gaps(gap_trials, gap_epochs, work)
    print(f"part 1 done: {g['trials']} trials", flush=True)  # noqa: T201
    seeds = [1, 2] if args.quick else [1, 2, 3, 4, 5]
    runs: list[tuple[str, int, dict[str, Any]]] = []  # (label, seed, result)

    def add(label: str, seed: int, result: dict[str, Any]) -> None:
        runs.append((label, seed, result))
        print(label, seed, result, flush=True)  # noqa: T201

    # 1 torch thread: the service on each database and plain Optuna in memory, every seed.
    # In full mode, plain Optuna on RDBStorage, far from the target and slow, for the first
    # seed; so is the shape on 2 threads, where the server competes with the training for the
    # 2 cores.
    # The service runs each database's seeds on one server and worker (their start-up is
    # not measured, and takes seconds a slow machine's quick mode cannot spare).
    for db_kind in databases:
        shares = service_shares(db_kind, shape_trials, shape_epochs, work, THREADS, seeds)
        for seed, r in zip(seeds, shares, strict=True):
            add(f"hposvc, {db_kind} (server + 1 worker slot), {THREADS} thread", seed, r)
    for seed in seeds:
        r = optuna_share("in-memory", shape_trials, shape_epochs, THREADS, seed)
        add(f"plain Optuna `study.optimize`, in-memory, {THREADS} thread", seed, r)
    if not args.quick:
        for kind in databases:
            r = optuna_share(kind, shape_trials, shape_epochs, THREADS, seeds[0])
            label = f"plain Optuna `study.optimize`, {kind} RDBStorage, {THREADS} thread"
            add(label, seeds[0], r)
        r = service_share(databases[0], shape_trials, shape_epochs, work, 2, seeds[0])
        add(f"hposvc, {databases[0]} (server + 1 worker slot), 2 thread", seeds[0], r)
        r = optuna_share("in-memory", shape_trials, shape_epochs, 2, seeds[0])
        add("plain Optuna `study.optimize`, in-memory, 2 thread", seeds[0], r)
    rows = _with_pooled(runs)
    epoch_ms = statistics.median(g["epoch_train"]) * 1000

    def ms(values: list[float]) -> str:
        return f"{_p(values, 0.5) * 1000:.1f} / {_p(values, 0.95) * 1000:.1f}"

    lines = [
        f"Command: `{command()}`  ",
        f"Machine: {machine()}  ",
        f"Load average: {load_before:.2f} before, {os.getloadavg()[0]:.2f} after (other "
        "work on the machine slows training and overhead unevenly)  ",
        f"Worker logs: `{work}`",
        "",
        f"**Idle time of a slot around trials** ({g['trials']} trials x {gap_epochs} epochs, "
        f"digits MLP, batch size {BATCH_SIZE}, random sampler, SQLite, fresh worker at DEBUG log "
        f"level; an epoch's training phase + validation: median {epoch_ms:.1f} ms):",
        "",
        "| interval | p50 / p95 ms |",
        "|---|---|",
        f"| gap: complete answered -> next claim answered | {ms(g['gap'])} |",
        f"| start of a trial: claim -> epoch 1 validated, minus epoch 1's training and "
        f"validation (trials 2..N) | {ms(g['start'])} |",
        f"| start of the first trial of a fresh slot (imports the training core, loads digits) "
        f"| {(g['first_start'] or float('nan')) * 1000:.0f} |",
        f"| between epochs: log line k -> k+1, minus epoch k+1's training and validation "
        f"(report, checkpoint) | {ms(g['between'])} |",
        f"| end of a trial: last epoch's line -> complete answered (last report, checkpoint, "
        f"test evaluation, model upload, complete) | {ms(g['end'])} |",
        "",
        f"**Non-training share, digits MLP study shape** ({shape_trials} trials x "
        f"{shape_epochs} epochs, batch size {BATCH_SIZE}, TPE + median pruner (5 startup "
        f"trials), {THREADS} torch thread unless a row says 2, one trial at a time). Training "
        "= the sum over every "
        "reported epoch of its training phase and its validation, timed inside the training "
        "core (`history[].train_seconds + validation_seconds`), identically for the service "
        "and the plain-Optuna objective. Everything the HPO system adds around that is "
        "non-training: sampling and claims, reports and prune decisions, checkpoints, model "
        "build, test evaluation, model upload, complete, HTTP, database.",
        "",
        "| run | seed | trials | epochs trained | wall s | training s | non-training share | "
        "training per trial ms | non-training per trial ms |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {label} | {seed} | {_states_text(r['states'])} | {r['epochs']} | "
            f"{r['wall']:.2f} | {r['train']:.2f} | **{r['share']:.1%}** | "
            f"{r['train'] / r['trials'] * 1000:.0f} | "
            f"{(r['wall'] - r['train']) / r['trials'] * 1000:.0f} |"
            for label, seed, r in rows
        ),
        "",
        "Target <= 3% (over the seeds together where a run has several): "
        + "; ".join(
            f"{label.replace(' (server + 1 worker slot)', '')} "
            f"{'met' if r['share'] <= 0.03 else 'not met'} "
            f"({r['share']:.1%}; 3% of its training is "
            f"{0.03 / 0.97 * r['train'] / r['trials'] * 1000:.1f} ms per trial)"
            for label, seed, r in rows
            if label.startswith("hposvc")
            and (seed == "all" or len(seeds) == 1 or "2 thread" in label)
        )
        + ".",
        "",
        "Each seed's trials are the same on both sides: plain Optuna's sampler is reseeded "
        "before each trial as the service's study cache reseeds it (crc32 of seed and trial "
        "number), so TPE proposes the same parameters, the training core trains the same "
        "models, and the pruner sees the same values. "
        + _same_trials(rows)
        + " A seed's mix of pruned and completed trials sets how much training there is per "
        "trial, and so the share of the same milliseconds; hence several seeds, and the "
        "target read over them together.",
        "",
        "An epoch of the hposvc rows on 1 thread took "
        + " and ".join(
            f"{r['train'] / r['epochs'] * 1000:.0f} ms ({label.split(', ')[1].split(' ')[0]})"
            for label, seed, r in rows
            if label.startswith("hposvc") and f"{THREADS} thread" in label and seed == "all"
        )
        + " of training and validation here, against the issue's ~50 ms: the same "
        "milliseconds per trial are a smaller share of slower epochs, so across machines "
        "compare the non-training milliseconds per trial, not the shares.",
        "",
        "Earlier (commit 2e6bda1: batch size 16 on 2 torch threads, epochs of ~34 ms): "
        "10.6% (13 ms per trial) on SQLite, 18.5% (27 ms) on PostgreSQL. Since: the shape "
        "runs on 1 torch thread at batch size 8 (see the docstring; the 2-thread rows "
        "keep the old setting's contention visible), a CPU trial seeds only the CPU generator "
        "(0.4 ms less setup), a pruned trial's attrs go out after the next claim is answered "
        "instead of with it, and the report that prunes a trial and the complete carry the "
        "slot's next claim, so their answer brings the next trial (one round trip per trial "
        "less; the claim is made as a claim of its own would be, after the trial ended). "
        "Where the service's time per trial went before that, traced with timestamps "
        "in the slot and the server (SQLite, 1 thread, load average 5 from other work): the "
        "claim, 4.2 ms p50 at the slot, 3.6 ms in the server, most of it TPE's own sampling "
        "(which plain Optuna pays too); the partial epoch a pruned trial trains while the "
        "answer that prunes it comes back (a report is 2.1 ms p50 at the slot, 1.5 ms in the "
        "server); ~0.5 ms per epoch between epochs (0.3 ms in process); setup ~0.8 ms; and for "
        "a completed trial its last report, test evaluation, model upload and complete (~10 ms).",
        "",
        "Issue's reference figures for plain Optuna on this shape: in-memory 1.6%, SQLite 24%, "
        "PostgreSQL 30% (about 100-160 ms per trial); target for the service <= 3% on SQLite "
        "and PostgreSQL.",
    ]
    body = "\n".join(lines)
    print(body)  # noqa: T201
    if not args.no_write:
        write_section("Worker overhead", body)


if __name__ == "__main__":
    main()
