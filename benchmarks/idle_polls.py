"""Idle polls: worker slots with nothing to run claim again and again while a study's last
trials run. What do they cost the server, and the trials that do run?

A study's whole budget is out (``--running`` trials, each reporting every 0.1 s), and
``--pollers`` other slots claim with no study named, each every ``--poll`` seconds, and get no
trial. That is the end of every study, for as long as its longest trial runs, and all of a
study that caps its concurrent trials (``max_concurrent``) on a cluster with more slots than
that. A worker slot claims every ``poll_seconds`` (1 s by default), so 64 pollers at 0.1 s are
the load of 640 idle slots.

Per database, the same study runs for ``--seconds`` without pollers and then with them (each
on a fresh server and database). Measured: the server process's CPU (``/proc/<pid>/stat``,
in cores: seconds of CPU per second of wall), the running trials' report latency, and the
pollers' claim latency and count.

    .venv/bin/python -m benchmarks.idle_polls [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import database, machine, percentiles, write_section

REPORT_EVERY = 0.1


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _register(base: str, name: str) -> int:
    body = {"name": name, "host": "bench"}
    return httpx.post(f"{base}/api/v1/workers", json=body).raise_for_status().json()["id"]


def _run_trial(base: str, worker: int, stop: threading.Event, latencies: list[float]) -> None:
    from workers.client import ServerClient

    client = ServerClient(base)
    trial = client.claim(worker, "idle", uuid.uuid4().hex)
    assert trial is not None, "the study has a trial for each running slot"
    step = 0
    while not stop.wait(REPORT_EVERY):
        step += 1
        t0 = time.perf_counter()
        client.report(trial.id, worker, step, 1.0 / step)
        latencies.append(time.perf_counter() - t0)
    client.close()


def _poller(args: tuple[str, list[int], float, float], _index: int, out: Any, start: Any) -> None:
    from workers.client import ServerClient

    base, workers, poll, seconds = args
    latencies: list[float] = []
    lock = threading.Lock()

    def poll_as(worker: int) -> None:
        client = ServerClient(base)
        mine = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            trial = client.claim(worker, None, uuid.uuid4().hex)
            mine.append(time.perf_counter() - t0)
            assert trial is None, "an idle poller was handed a trial"
            time.sleep(poll)
        client.close()
        with lock:
            latencies.extend(mine)

    start.wait()
    threads = [threading.Thread(target=poll_as, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(latencies)


def run(db_kind: str, running: int, pollers: int, poll: float, seconds: float) -> dict[str, Any]:
    from tests.conftest import ServerProcess

    with database(db_kind) as url, tempfile.TemporaryDirectory() as tmp:
        srv = ServerProcess(url, Path(tmp) / "server.log").start()
        try:
            base = srv.url
            spec = {
                "name": "idle",
                "objectives": [{"name": "loss", "direction": "minimize"}],
                "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
                "sampler": {"name": "random", "seed": 1},
                "pruner": {"name": "median"},
                "budget": {"max_trials": running, "lease_seconds": 600},
            }
            httpx.post(f"{base}/api/v1/studies", json=spec).raise_for_status()
            runners = [_register(base, f"runner-{i}") for i in range(running)]
            idle = [_register(base, f"idle-{i}") for i in range(pollers)]
            n_procs = min(4, pollers)
            ctx = mp.get_context("spawn")
            out, start = ctx.Queue(), ctx.Barrier(n_procs + 1)
            procs = [
                ctx.Process(
                    target=_poller, args=((base, idle[i::n_procs], poll, seconds), i, out, start)
                )
                for i in range(n_procs)
            ]
            for p in procs:
                p.start()
            stop, reports = threading.Event(), []
            threads = [
                threading.Thread(target=_run_trial, args=(base, w, stop, reports)) for w in runners
            ]
            for t in threads:
                t.start()
            time.sleep(1.0)  # every trial claimed and reporting
            if procs:
                start.wait(timeout=120)
            reports.clear()
            cpu0, t0 = _cpu_seconds(srv.proc.pid), time.perf_counter()
            time.sleep(seconds)
            cpu1, t1 = _cpu_seconds(srv.proc.pid), time.perf_counter()
            measured = list(reports)
            stop.set()
            for t in threads:
                t.join()
            claims = [x for _ in procs for x in out.get(timeout=120)]
            for p in procs:
                p.join()
        finally:
            srv.stop()
    return {
        "cores": (cpu1 - cpu0) / (t1 - t0),
        "reports": len(measured),
        "report_ms": percentiles(measured),
        "claims_per_s": len(claims) / seconds,
        "claim_ms": percentiles(claims),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--running", type=int, default=8, help="trials running (the budget)")
    parser.add_argument("--pollers", type=int, default=64)
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between a slot's claims")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    seconds = 4.0 if args.quick else 15.0
    rows = []
    for db_kind in args.databases.split(","):
        for pollers in (0, args.pollers):
            r = run(db_kind, args.running, pollers, args.poll, seconds)
            claims = (
                f"{r['claims_per_s']:.0f} | " + "/".join(f"{x:.1f}" for x in r["claim_ms"])
                if pollers
                else "- | -"
            )
            row = (
                f"| {db_kind} | {pollers} | {r['cores']:.2f} | {r['reports']} | "
                + "/".join(f"{x:.1f}" for x in r["report_ms"])
                + f" | {claims} |"
            )
            print(row, flush=True)  # noqa: T201
            rows.append(row)
    header = (
        "| database | idle pollers | server CPU (cores) | reports | report ms (p50/p95/p99) | "
        "claims/s | claim ms (p50/p95/p99) |\n|---|---|---|---|---|---|---|"
    )
    body = (
        f"Command: `.venv/bin/python -m benchmarks.idle_polls{' --quick' if args.quick else ''}`"
        f"  \nMachine: {machine()}  \n"
        f"A study's whole budget running ({args.running} trials, each reporting every "
        f"{REPORT_EVERY} s, median pruner); {args.pollers} more slots claim with no study "
        f"named every {args.poll} s (the load of {args.pollers / args.poll:.0f} slots polling "
        f"every second) and get no trial; {seconds:.0f} s measured per row, each row on a "
        "fresh server and database.\n\n" + header + "\n" + "\n".join(rows)
    )
    if not args.no_write:
        write_section("Idle polls", body)


if __name__ == "__main__":
    main()
