"""The GPU benchmark's sampling, here without a GPU: a stand-in ``nvidia-smi`` on the PATH.

The benchmark runs only on a lent GPU machine, where a harness bug would cost the device time
(benchmarks/device/run.sh); what can be checked without one is checked here.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import pytest

from benchmarks.gpu_utilization import GpuSampler, parse_sample, table, verdict


def test_a_reading_is_parsed_in_local_time() -> None:
    at, util, memory = parse_sample("2026/12/07 21:04:05.250, 97, 1234\n")
    assert at == datetime(2026, 12, 7, 21, 4, 5, 250000).timestamp()
    assert (util, memory) == (97.0, 1234.0)


@pytest.mark.parametrize(
    "line", ["", "timestamp, utilization.gpu", "2026/12/07 21:04:05.250, [N/A], 3"]
)
def test_other_lines_are_no_reading(line: str) -> None:
    assert parse_sample(line) is None


def test_the_sampler_reads_nvidia_smi_until_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\n"
        'echo "$@" > "$(dirname "$0")/args"\n'
        "while true; do\n"
        '  echo "$(date "+%Y/%m/%d %H:%M:%S").000, 88, 512"\n'
        "  sleep 0.05\n"
        "done\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    started = time.time()
    sampler = GpuSampler("0", interval_ms=50)
    time.sleep(0.6)
    sampler.stop()
    assert len(sampler.samples) >= 3
    assert {s[1:] for s in sampler.samples} == {(88.0, 512.0)}
    assert sampler.between(started - 1, time.time() + 1) == sampler.samples
    assert sampler.between(0, started - 5) == []
    args = (tmp_path / "args").read_text().split()
    assert "--id=0" in args and "--loop-ms=50" in args


def test_the_verdict_takes_the_best_run_with_several_slots() -> None:
    common = {"trials": 10, "pruned": 4, "span": 5.0, "trials_per_s": 2.0, "epochs_per_s": 9.0}
    gpu = {"samples": 50, "util_p10": 80.0, "util_median": 92.0, "memory_max": 900.0}
    rows = [
        {**common, **gpu, "slots": 1, "util_mean": 99.0},  # one slot does not count
        {**common, **gpu, "slots": 2, "util_mean": 85.0},
        {**common, **gpu, "slots": 4, "util_mean": 91.5},
    ]
    assert "best 91.5% at 4 slots" in verdict(rows) and "**met**" in verdict(rows)
    assert "**not met**" in verdict(rows[:2])
    assert "not measured" in verdict([{**common, "slots": 2}])
    lines = table(rows + [{**common, "slots": 8}])
    assert len(lines) == 2 + 4 and lines[-1].count("n/a") == 2
