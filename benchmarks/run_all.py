"""Run every benchmark script in quick mode, one after the other.

Each script writes its own section of benchmarks/RESULTS.md; ``training_throughput.py`` only
prints, so its Markdown output is written here under "Training throughput".
``dashboard_load.py`` has no ``--quick`` and runs with its defaults (10,000 trials, well
under a minute). Scripts run as modules from the repository root (``python -m
benchmarks.NAME``), one at a time; a failing script does not stop the others, and the exit
status is 1 if any failed.

At the end each script's duration and the total are printed; a run of every script (no
``--only`` or ``--skip``) that writes also puts them, with the command and the machine, in
the "How these were run" section at the top of RESULTS.md. Quick mode is meant to finish in
under 10 minutes on 2 cores. Wrap the run in ``flock /tmp/bench.lock`` on a shared machine.

    .venv/bin/python benchmarks/run_all.py [--full] [--only a,b] [--skip a,b] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, RESULTS, machine, write_section  # noqa: E402

# name -> extra arguments in quick mode
SCRIPTS: dict[str, list[str]] = {
    "dispatch": ["--quick"],
    "idle_polls": ["--quick"],
    "short_trials": ["--quick"],
    "cost_growth": ["--quick"],
    "worker_overhead": ["--quick"],
    "training_throughput": ["--quick"],
    "search_efficiency": ["--quick"],
    "dashboard_load": [],
    "server_memory": ["--quick"],
}
PRINTS_ONLY = {"training_throughput": "Training throughput"}
HOW_RUN = "How these were run"


def _write_how_run(body: str) -> None:
    """Write the HOW_RUN section, placed right under the file's title the first time."""
    marker = f"## {HOW_RUN}\n"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if marker not in text:
        title, _, rest = text.partition("\n")
        RESULTS.write_text(f"{title}\n\n{marker}\n{rest.lstrip()}")
    write_section(HOW_RUN, body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="default sizes instead of quick")
    parser.add_argument("--only", default="", help="comma-separated script names")
    parser.add_argument("--skip", default="", help="comma-separated script names")
    parser.add_argument("--no-write", action="store_true", help="pass --no-write; print only")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per script")
    args = parser.parse_args()
    only = {s for s in args.only.split(",") if s}
    skip = {s for s in args.skip.split(",") if s}
    unknown = (only | skip) - set(SCRIPTS)
    if unknown:
        parser.error(f"unknown script(s): {', '.join(sorted(unknown))}")

    outcomes = []
    load_before = os.getloadavg()[0]
    started_all = time.perf_counter()
    for name, quick_args in SCRIPTS.items():
        if (only and name not in only) or name in skip:
            continue
        cmd = [sys.executable, "-m", f"benchmarks.{name}", *([] if args.full else quick_args)]
        if args.no_write and name not in PRINTS_ONLY:
            cmd.append("--no-write")
        print(f"\n=== {' '.join(cmd[1:])}", flush=True)  # noqa: T201
        started = time.perf_counter()
        capture = name in PRINTS_ONLY
        try:
            proc = subprocess.run(
                cmd, cwd=REPO, timeout=args.timeout, text=True, capture_output=capture
            )
            code = proc.returncode
        except subprocess.TimeoutExpired:
            proc, code = None, "timeout"
        seconds = time.perf_counter() - started
        if capture and proc is not None:
            sys.stdout.write(proc.stdout)
            sys.stderr.write(proc.stderr)
            if code == 0 and not args.no_write:
                write_section(PRINTS_ONLY[name], proc.stdout)
        outcomes.append((name, code, seconds))
        print(f"=== {name}: exit {code} in {seconds:.0f} s", flush=True)  # noqa: T201

    total = time.perf_counter() - started_all
    print("\n| script | exit | seconds |\n|---|---|---:|")  # noqa: T201
    for name, code, seconds in outcomes:
        print(f"| {name} | {code} | {seconds:.0f} |")  # noqa: T201
    print(f"| total | | {total:.0f} |")  # noqa: T201
    if not (args.no_write or only or skip):
        command = " ".join([".venv/bin/python benchmarks/run_all.py", *sys.argv[1:]])
        table = [f"| `{name}` | {code} | {seconds:.0f} |" for name, code, seconds in outcomes]
        _write_how_run(
            "\n".join(
                [
                    f"Command: `{command}` ({'full' if args.full else 'quick'} mode), "
                    f"{datetime.now(UTC):%Y-%m-%d}  ",
                    f"Machine: {machine()}  ",
                    f"Load average: {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
                    "(other work on the machine slows every figure)",
                    "",
                    "The scripts ran one after the other in this one run; each that exited 0 "
                    "rewrote its section below, which names its own command. Sections whose "
                    "command says otherwise (full sizes) come from separate runs.",
                    "",
                    "| script | exit | seconds |",
                    "|---|---|---:|",
                    *table,
                    f"| **total** | | **{total:.0f}** ({total / 60:.1f} min) |",
                ]
            )
        )
    return 0 if all(code == 0 for _, code, _ in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
