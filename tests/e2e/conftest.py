from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO


class WorkerProcess:
    """``hposvc worker`` in its own process group, so kill -9 takes its slots too."""

    def __init__(self, server_url: str, log: Path, *args: str) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hposvc.cli",
                "worker",
                "--server",
                server_url,
                "--devices",
                "cpu",
                *args,
            ],
            stdout=open(log, "ab"),
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def kill_hard(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator:
    workers: list[WorkerProcess] = []

    def start(server_url: str, *args: str) -> WorkerProcess:
        worker = WorkerProcess(server_url, tmp_path / f"worker{len(workers)}.log", *args)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
