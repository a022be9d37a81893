"""Dispatch through server replicas: one study, K workers, 1 or 2 servers on one database.

    .venv/bin/python -m benchmarks.replicas [--databases sqlite,postgresql] [--repeat 2]

The loop of ``benchmarks/dispatch.py`` (claim -> 10 reports -> complete, instant objective,
median pruner, next claims riding on the request that ends a trial), with worker i talking to
server i % N, as workers keeping their connections behind a load balancer do. With two
servers each takes turns deciding the study's requests: every decision finds the study moved
on by the other and syncs its cache first (``hot_paths._catch_up``). Each row alternates 1
and 2 servers ``--repeat`` times (the machine's speed drifts); trials/s are medians. Not part
of ``run_all.py``: no target names replicas.
"""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Any

from benchmarks import dispatch
from benchmarks.common import machine, write_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--samplers", default="random,tpe")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    rows = []
    for db_kind in args.databases.split(","):
        for sampler in args.samplers.split(","):
            load = os.getloadavg()[0]
            runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
            for _ in range(args.repeat):
                for n in runs:
                    runs[n].append(
                        dispatch.run_service(db_kind, sampler, args.workers, args.trials, n)
                    )
            rate = {n: statistics.median(r["rate"] for r in rs) for n, rs in runs.items()}
            # The latencies of the run with the median rate (of the upper two, with two runs).
            report = {
                n: sorted(rs, key=lambda r: r["rate"])[len(rs) // 2]["latency"]["report"]
                for n, rs in runs.items()
            }
            dups = sum(r["duplicates"] for rs in runs.values() for r in rs)
            row = (
                f"| {db_kind} | {sampler} | {rate[1]:.1f} | {rate[2]:.1f} | "
                f"**{rate[2] / rate[1]:.2f}** | "
                + " | ".join("/".join(f"{x:.1f}" for x in report[n]) for n in (1, 2))
                + f" | {dups} | {load:.1f} |"
            )
            print(row, flush=True)  # noqa: T201
            rows.append(row)
    body = "\n".join(
        [
            f"Command: `.venv/bin/python -m benchmarks.replicas --databases {args.databases} "
            f"--samplers {args.samplers} --repeat {args.repeat}`  ",
            f"Machine: {machine()}  ",
            f"K = {args.workers} workers, {args.trials} trials per run; worker i talks to server "
            f"i % N; each row: 1 and 2 servers alternated {args.repeat} times, median trials/s. "
            "See the script's docstring.",
            "",
            "| database | sampler | 1 server trials/s | 2 servers trials/s | 2 / 1 "
            "| report ms p50/p95/p99, 1 server | 2 servers | duplicate points | load |",
            "|---|---|---:|---:|---:|---|---|---:|---:|",
            *rows,
        ]
    )
    if not args.no_write:
        write_section("Dispatch through server replicas", body)


if __name__ == "__main__":
    main()
