"""Server memory: RSS of ``hposvc server`` holding S studies of 1,000 finished trials each.

A SQLite database is seeded with S completed studies of 1,000 trials (rows written with
SQLAlchemy as the server writes them: 70% complete with 10 intermediate values and the
``user_attrs`` a worker leaves (metrics, history of 10 epochs), 20% pruned, 10% failed; Optuna
distribution JSON; the study's ``seq``, ``n_trials`` and ``budget_used``). Then a real ``hposvc
server`` starts and every study is touched once: ``GET /api/v1/studies/{name}`` (summary) and
``GET /api/v1/studies/{name}/charts/history`` (which builds the study's in-memory Optuna cache
and draws a figure). The server's VmRSS (``/proc/<pid>/status``) is read after start and after
each study; VmHWM is the peak.

    .venv/bin/python benchmarks/server_memory.py [--quick] [--studies 100] [--no-write]

The server keeps at most ``HPOSVC_MAX_CACHED_STUDIES`` study caches (default 64, least recently
used evicted); the script passes that setting to the server explicitly and records it.

Target (issue): < 500 MB with 100 studies of 1,000 trials, judged on the peak RSS (VmHWM). The
full mode measures 100 studies and writes "Server memory"; quick mode seeds 20 studies,
extrapolates linearly to 100 (labelled as such; the line ignores the cache limit) and writes
"Server memory (quick)", so a quick run does not replace the measured figure.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, synthetic_trial, write_section  # noqa: E402

TRIALS = 1_000
EPOCHS = 10
TARGET_MB = 500
MB_PER_MIB = 1.048576


def seed(url: str, n_studies: int, n_trials: int) -> None:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
        distribution_to_json,
    )
    from sqlalchemy import create_engine, insert

    from hposvc.db.models import IntermediateValue, Study, Trial, Worker
    from tests.e2e.dashboard_seed import study_spec

    dists = {
        "lr": FloatDistribution(1e-4, 0.1, log=True),
        "layers": IntDistribution(1, 4),
        "optimizer": CategoricalDistribution(["sgd", "adam"]),
    }
    dist_json = {k: distribution_to_json(d) for k, d in dists.items()}
    rng = random.Random(0)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    engine = create_engine(url)
    trial_id = 0
    with engine.begin() as conn:
        conn.execute(
            insert(Worker),
            [
                {
                    "id": i + 1,
                    "name": f"w{i}",
                    "host": f"node-{i}",
                    "slots": 2,
                    "devices": ["cuda:0"],
                    "registered_at": t0,
                    "last_heartbeat_at": t0,
                }
                for i in range(4)
            ],
        )
    for s in range(n_studies):
        name = f"mem-{s:03d}"
        spec = study_spec(name)
        spec["budget"]["max_trials"] = n_trials
        trials, values = [], []
        for i in range(n_trials):
            trial_id += 1
            params, state, curve, value = synthetic_trial(rng, EPOCHS)
            start = t0 + timedelta(seconds=s * n_trials + i)
            attrs = {}
            if state == "complete":
                attrs = {
                    "metrics": {"val_loss": value, "val_accuracy": 1 - value / 3},
                    "epochs_run": len(curve),
                    "stopped": "completed",
                    "history": [
                        {
                            "epoch": e + 1,
                            "train_loss": v * 1.1,
                            "lr": params["lr"],
                            "train_seconds": 0.05,
                            "samples_per_second": 21000.0,
                            "val_loss": v,
                            "val_accuracy": 1 - v / 3,
                        }
                        for e, v in enumerate(curve)
                    ],
                    "slot": i % 2,
                    "device": "cuda:0",
                }
            trials.append(
                {
                    "id": trial_id,
                    "study_id": s + 1,
                    "number": i,
                    "state": state,
                    "params": params,
                    "distributions": dist_json,
                    "value": value,
                    "values": [value] if value is not None else None,
                    "system_attrs": {},
                    "user_attrs": attrs,
                    "attempt": 1,
                    "counts_budget": True,
                    "worker_id": i % 4 + 1,
                    "fail_reason": "RuntimeError: diverged" if state == "fail" else None,
                    "pruned_step": len(curve) if state == "pruned" else None,
                    "last_step": len(curve),
                    "seq": 1,
                    "created_at": start,
                    "started_at": start,
                    "finished_at": start + timedelta(seconds=0.9),
                }
            )
            values += [
                {"trial_id": trial_id, "step": e + 1, "value": v, "should_prune": False}
                for e, v in enumerate(curve)
            ]
        with engine.begin() as conn:
            conn.execute(
                insert(Study),
                [
                    {
                        "id": s + 1,
                        "name": name,
                        "state": "completed",
                        "spec": spec,
                        "system_attrs": {},
                        "seq": 1,
                        "n_trials": n_trials,
                        "budget_used": n_trials,
                        "created_at": t0,
                        "updated_at": t0,
                        "completed_at": t0 + timedelta(seconds=(s + 1) * n_trials),
                    }
                ],
            )
            conn.execute(insert(Trial), trials)
            conn.execute(insert(IntermediateValue), values)
    engine.dispose()


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(rest.split()[0]) / 1024  # kB -> MiB
    return fields["VmRSS"], fields["VmHWM"]


def command() -> str:
    """This run's command line, as typed from the repository root."""
    return " ".join([".venv/bin/python", f"benchmarks/{Path(__file__).name}", *sys.argv[1:]])


def main() -> None:
    import argparse

    from hposvc.db.migrate import upgrade
    from hposvc.settings import Settings
    from tests.conftest import ServerProcess

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 studies, extrapolated to 100")
    parser.add_argument("--studies", type=int, default=None, help="default 100 (quick: 20)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    n = args.studies or (20 if args.quick else 100)
    # The environment's value (or the default), passed on explicitly so the figure names it.
    max_cached = Settings(database_url="sqlite://").max_cached_studies
    work = Path(tempfile.mkdtemp(prefix="hposvc-server-memory-"))
    url = f"sqlite:///{work / 'bench.db'}"
    upgrade(url)
    started = time.perf_counter()
    seed(url, n, TRIALS)
    seeded = time.perf_counter() - started
    print(f"seeded {n} studies x {TRIALS} trials in {seeded:.1f} s", flush=True)  # noqa: T201
    srv = ServerProcess(
        url, work / "server.log", HPOSVC_MAX_CACHED_STUDIES=str(max_cached)
    ).start()
    try:
        pid = srv.proc.pid
        time.sleep(1.0)
        rss_start, _ = rss_mb(pid)
        series: list[float] = []
        touch: list[float] = []
        figure_kb: list[float] = []
        with httpx.Client(base_url=f"{srv.url}/api/v1", timeout=300) as http:
            for s in range(n):
                name = f"mem-{s:03d}"
                t0 = time.perf_counter()
                http.get(f"/studies/{name}").raise_for_status()
                chart = http.get(f"/studies/{name}/charts/history")
                chart.raise_for_status()
                touch.append(time.perf_counter() - t0)
                figure_kb.append(len(chart.content) / 1024)
                series.append(rss_mb(pid)[0])
            # A second pass: a study already touched should cost nothing more.
            for s in range(n):
                name = f"mem-{s:03d}"
                http.get(f"/studies/{name}").raise_for_status()
                http.get(f"/studies/{name}/charts/history").raise_for_status()
        rss_end, hwm = rss_mb(pid)
    finally:
        srv.stop()

    # Growth per study over the second half (the first studies also pay one-off imports).
    half = n // 2
    per_study = (series[-1] - series[half - 1]) / (n - half) if n > 1 else float("nan")
    extrapolated = series[-1] + per_study * (100 - n)
    checkpoints = sorted({1, 5, 10, n // 2, max_cached, n} & set(range(1, n + 1)))
    lines = [
        f"Command: `{command()}`  ",
        f"Machine: {machine()}  ",
        f"{n} completed studies x {TRIALS:,} trials on SQLite (seeded in {seeded:.0f} s; 70% "
        f"complete with {EPOCHS} intermediate values and a worker's user_attrs, 20% pruned, "
        "10% failed). Each study touched once: summary + `charts/history` (first touch builds "
        "the study's Optuna cache and draws the figure), then all of them a second time. "
        f"Server setting `HPOSVC_MAX_CACHED_STUDIES={max_cached}`: at most {max_cached} study "
        "caches are kept, the least recently used evicted and rebuilt on its next use"
        + (
            " (so the second pass, in the same order, rebuilds every cache)"
            if n > max_cached
            else ""
        )
        + ". RSS = VmRSS of the `hposvc server` process, in MiB.",
        "",
        "| measure | RSS MiB |",
        "|---|---:|",
        f"| after start, nothing touched | {rss_start:.0f} |",
        *(f"| after touching {k} studies | {series[k - 1]:.0f} |" for k in checkpoints),
        f"| after the second pass over all {n} | {rss_end:.0f} |",
        f"| peak (VmHWM) | {hwm:.0f} |",
        f"| growth per study touched (studies {half} -> {n}) | {per_study:.2f} |",
    ]
    if n < 100:
        lines.append(
            f"| **extrapolated** to 100 studies (last + {100 - n} x growth per study; not "
            f"measured; ignores the limit of {max_cached} cached studies) | "
            f"**{extrapolated:.0f}** |"
        )
        verdict = extrapolated
    else:
        verdict = hwm
    lines += [
        "",
        f"Touch time per study (summary + history chart, first time): median "
        f"{sorted(touch)[len(touch) // 2] * 1000:.0f} ms, max {max(touch) * 1000:.0f} ms; "
        f"history figure JSON: {sum(figure_kb) / len(figure_kb):.0f} KiB per study.",
        "",
        f"100 studies x 1,000 trials: {verdict:.0f} MiB = {verdict * MB_PER_MIB:.0f} MB "
        f"{'(extrapolated) ' if n < 100 else '(peak, measured) '}against the target < "
        f"{TARGET_MB} MB: "
        f"**{'met' if verdict * MB_PER_MIB < TARGET_MB else 'not met'}**.",
    ]
    body = "\n".join(lines)
    print(body)  # noqa: T201
    if not args.no_write:
        write_section("Server memory" if n >= 100 else "Server memory (quick)", body)


if __name__ == "__main__":
    main()
