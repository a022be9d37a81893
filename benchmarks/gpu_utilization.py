"""GPU utilization and throughput: a study of small CNN trials on one GPU, several slots on it.

    python3 -m benchmarks.gpu_utilization [--slots 1,2,4,8] [--seconds 40] [--no-write]
    .venv/bin/python -m benchmarks.gpu_utilization --device cpu --slots 1,2 --seconds 10 --no-write

For each slot count S: a ``hposvc server`` on SQLite and one ``hposvc worker --devices 0
--slots-per-device S`` run a study of digits CNN trials (the demo's problem: TPE + Hyperband
over learning rate, width, channels, depth and batch size, at most 10 epochs a trial) for
``--seconds`` seconds: the study's time limit, after which no trial starts and the running
ones finish. Meanwhile nvidia-smi samples the GPU every 100 ms (``--query-gpu=timestamp,
utilization.gpu,memory.used --loop-ms=100``). "Utilization" is nvidia-smi's: the share of
the last sample period in which at least one kernel ran. Its figures here are over the
study's span, from the first trial's start to the last trial's end (so the slots' start-up
and the server's answers count, as they do for a user); memory is the largest reading.

Per slot count: trials and epochs per second over that span, GPU utilization (mean, 10th
percentile, median of the samples) and memory. Target (issue 5): utilization >= 90% with
several slots per GPU.

``--device cpu`` runs the same study on CPU slots without sampling (a dry run of the harness
where there is no GPU). Without CUDA or nvidia-smi and without ``--device cpu``, the script
says so and exits 2. On a lent GPU machine ``benchmarks/device/run.sh`` runs it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
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

MAX_EPOCHS = 10
TARGET = 0.90
SPEC: dict[str, Any] = {
    "objectives": [{"name": "val_accuracy", "direction": "maximize"}],
    "search_space": {
        "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "channels": {"type": "int", "low": 8, "high": 32, "log": True},
        "width": {"type": "int", "low": 32, "high": 256, "log": True},
        "layers": {"type": "int", "low": 1, "high": 2},
        "batch_size": {"type": "categorical", "choices": [32, 64, 128]},
    },
    "sampler": {"name": "tpe", "seed": 0},
    "pruner": {
        "name": "hyperband",
        "options": {"min_resource": 1, "max_resource": MAX_EPOCHS, "reduction_factor": 3},
    },
    "training": {"dataset": "digits", "model": "cnn", "max_epochs": MAX_EPOCHS},
}


class GpuSampler:
    """``nvidia-smi`` in loop mode on a thread: (time, utilization %, memory MiB) readings."""

    QUERY = "timestamp,utilization.gpu,memory.used"

    def __init__(self, gpu: str, interval_ms: int = 100) -> None:
        self.samples: list[tuple[float, float, float]] = []
        self._proc = subprocess.Popen(
            [
                "nvidia-smi",
                f"--id={gpu}",
                f"--query-gpu={self.QUERY}",
                "--format=csv,noheader,nounits",
                f"--loop-ms={interval_ms}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            sample = parse_sample(line)
            if sample is not None:
                self.samples.append(sample)

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)
        self._thread.join(timeout=10)

    def between(self, start: float, end: float) -> list[tuple[float, float, float]]:
        return [s for s in self.samples if start <= s[0] <= end]


def parse_sample(line: str) -> tuple[float, float, float] | None:
    """One line of ``--query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,
    nounits`` (``2026/12/07 21:04:05.123, 97, 1234``) as (seconds since the epoch, %, MiB);
    None for anything else (a field nvidia-smi cannot read prints ``[N/A]``)."""
    parts = [p.strip() for p in line.split(",")]
    if len(parts) != 3:
        return None
    try:
        # nvidia-smi prints the machine's local time, as a naive datetime's timestamp() reads it
        at = datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
        return at, float(parts[1]), float(parts[2])
    except ValueError:
        return None


def run_study(slots: int, seconds: float, device: str, work: Path) -> dict[str, Any]:
    name = f"gpu-{slots}-slots"
    spec = {
        **SPEC,
        "name": name,
        "budget": {"max_trials": 100_000, "time_limit_seconds": seconds, "lease_seconds": 120},
    }
    gpu = None if device == "cpu" else "0"
    with database("sqlite") as url, server(url) as base:
        create_study(base, spec)
        sampler = GpuSampler(gpu) if gpu is not None else None
        try:
            with worker_process(
                base,
                "--devices",
                gpu or "cpu",
                "--slots-per-device",
                str(slots),
                "--exit-when-idle",
                "3",
                log=work / f"worker-{slots}.log",
            ) as proc:
                proc.wait(timeout=seconds + 300)
        finally:
            if sampler is not None:
                sampler.stop()
        trials = [t for t in fetch_trials(base, name) if t["finished_at"] and t["started_at"]]
        with httpx.Client(base_url=f"{base}/api/v1", timeout=60) as http:
            state = http.get(f"/studies/{name}").json()["state"]
    if not trials:
        raise RuntimeError(f"{name}: no trial finished (see {work}/worker-{slots}.log)")
    start = min(parse_time(t["started_at"]) for t in trials)
    end = max(parse_time(t["finished_at"]) for t in trials)
    span = end - start
    epochs = sum(t["last_step"] or 0 for t in trials)
    row: dict[str, Any] = {
        "slots": slots,
        "trials": len(trials),
        "pruned": sum(t["state"] == "pruned" for t in trials),
        "failed": sum(t["state"] == "fail" for t in trials),
        "study_state": state,
        "span": span,
        "trials_per_s": len(trials) / span,
        "epochs_per_s": epochs / span,
        "devices": sorted({str(t["user_attrs"].get("device")) for t in trials}),
    }
    if sampler is not None:
        window = sampler.between(start, end)
        if not window:
            raise RuntimeError(f"{name}: no nvidia-smi sample within the study's span")
        util = sorted(s[1] for s in window)
        row.update(
            samples=len(window),
            util_mean=statistics.fmean(util),
            util_p10=util[len(util) // 10],
            util_median=statistics.median(util),
            memory_max=max(s[2] for s in window),
        )
    return row


def gpu_facts(device: str) -> str:
    if device == "cpu":
        return "none (--device cpu: CPU slots, no utilization sampled)"
    out = subprocess.run(
        [
            "nvidia-smi",
            "--id=0",
            "--query-gpu=name,driver_version,memory.total",
            "--format=csv,noheader",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return f"GPU 0: {out}"


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| slots on the GPU | trials (pruned) | span s | trials/s | epochs/s "
        "| GPU utilization mean / p10 / median | GPU memory max MiB |",
        "|---:|---|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        util = (
            f"**{r['util_mean']:.1f}%** / {r['util_p10']:.0f}% / {r['util_median']:.0f}% "
            f"({r['samples']} samples)"
            if "util_mean" in r
            else "n/a"
        )
        memory = f"{r['memory_max']:.0f}" if "memory_max" in r else "n/a"
        lines.append(
            f"| {r['slots']} | {r['trials']} ({r['pruned']}) | {r['span']:.1f} "
            f"| {r['trials_per_s']:.2f} | {r['epochs_per_s']:.1f} | {util} | {memory} |"
        )
    return lines


def verdict(rows: list[dict[str, Any]]) -> str:
    several = [r for r in rows if r["slots"] >= 2 and "util_mean" in r]
    if not several:
        return "GPU utilization: not measured (no GPU run with 2 slots or more)."
    best = max(several, key=lambda r: r["util_mean"])
    met = "met" if best["util_mean"] >= TARGET * 100 else "not met"
    return (
        f"GPU utilization with several slots per GPU: best {best['util_mean']:.1f}% at "
        f"{best['slots']} slots (target >= {TARGET:.0%}): **{met}**."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slots", default="1,2,4,8", help="slot counts, comma-separated")
    parser.add_argument("--seconds", type=float, default=40, help="each study's time limit")
    parser.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if args.device == "gpu":
        import torch

        if not torch.cuda.is_available() or shutil.which("nvidia-smi") is None:
            sys.stderr.write("no CUDA device or no nvidia-smi here: nothing to measure\n")
            return 2
    slot_counts = [int(s) for s in args.slots.split(",")]
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="hposvc-gpu-") as tmp:
        for slots in slot_counts:
            row = run_study(slots, args.seconds, args.device, Path(tmp))
            sys.stdout.write(f"{row}\n")
            sys.stdout.flush()
            rows.append(row)
    script = ["-m", __spec__.name] if __spec__ else [f"benchmarks/{Path(__file__).name}"]
    body = "\n".join(
        [
            f"Command: `python3 {' '.join([*script, *sys.argv[1:]])}` "
            f"({(time.perf_counter() - started) / 60:.1f} min)  ",
            f"Machine: {machine()}  ",
            f"Device: {gpu_facts(args.device)}",
            "",
            f"Each row: one worker with that many slots on GPU 0, a study of digits CNN trials "
            f"(TPE + Hyperband, at most {MAX_EPOCHS} epochs) for {args.seconds:g} s; "
            "utilization sampled by nvidia-smi every 100 ms over the study's span (first "
            "trial's start to last trial's end). See the script's docstring.",
            "",
            *table(rows),
            "",
            verdict(rows),
        ]
    )
    sys.stdout.write(body + "\n")
    if not args.no_write and args.device == "gpu":
        write_section("GPU utilization and throughput", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
