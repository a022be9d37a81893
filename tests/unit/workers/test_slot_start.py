"""Slot processes start as forks of a warm forkserver and still set up their own threads,
GPU and signals (workers/daemon.py ``start_slot``, workers/slot.py ``prepare_slot_process``).

This module imports neither torch nor the training core, so a slot that has them in
``sys.modules`` before its first line got them from the forkserver.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from workers.daemon import slot_context, start_slot
from workers.devices import Slot
from workers.settings import WorkerSettings
from workers.slot import prepare_slot_process

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="slots fork from a forkserver on Linux only"
)

WARM = ("torch", "workers.training.runner")


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _probe(conn: Any, settings: WorkerSettings, slot: Slot, stop: Any) -> None:
    """A slot target that reports what it found after the fork and after slot set-up."""
    warm_at_entry = {name: name in sys.modules for name in WARM}
    prepare_slot_process(settings, slot, stop)
    import numpy as np
    import torch

    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    before = _os_threads()
    # Elementwise work large enough for at::parallel_for: the first parallel region starts
    # torch's OpenMP pool (threads - 1 workers), which hangs if the forkserver had one.
    torch.ones(4_000_000).mul_(2.0).sum().item()
    after = _os_threads()
    conn.send(
        {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "warm_at_entry": warm_at_entry,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "cuda_initialized": torch.cuda.is_initialized(),
            "torch_threads": torch.get_num_threads(),
            "os_threads_started_by_torch": after - before,
            "sigterm_blocked": signal.SIGTERM in blocked,
            "draws": (torch.rand(1).item(), np.random.random(), random.random()),
        }
    )
    conn.close()


def _run_probe(slot: Slot) -> dict[str, Any]:
    ctx = slot_context()
    receive, send = ctx.Pipe(duplex=False)
    settings = WorkerSettings(log_level="WARNING")
    stop = ctx.Event()  # kept referenced until the slot is done: the child opens it by name
    proc = start_slot(ctx, _probe, (send, settings, slot, stop), slot)
    send.close()
    try:
        assert receive.poll(60), "the slot did not report within 60 s"
        report = receive.recv()
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
    assert proc.exitcode == 0
    return report


def test_slots_are_forks_of_a_forkserver_that_has_imported_torch() -> None:
    report = _run_probe(Slot(0, "cpu", None, 1))

    assert slot_context().get_start_method() == "forkserver"
    assert report["ppid"] != os.getpid()  # the forkserver's child, not ours
    assert b"forkserver" in Path(f"/proc/{report['ppid']}/cmdline").read_bytes()
    assert report["warm_at_entry"] == dict.fromkeys(WARM, True)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_forked_slot_sets_its_own_threads_gpu_and_signals(threads: int) -> None:
    report = _run_probe(Slot(0, "cuda:0", "3", threads))

    assert report["cuda_visible_devices"] == "3"
    assert report["cuda_initialized"] is False  # CUDA starts in the trial, after the env is set
    assert report["torch_threads"] == threads
    # torch's pool is made in the slot, at the size the slot asked for: none for 1 thread,
    # OpenMP's workers for 2 (had the forkserver made one, the probe would hang above).
    if threads == 1:
        assert report["os_threads_started_by_torch"] == 0
    else:
        assert report["os_threads_started_by_torch"] >= 1
    assert report["sigterm_blocked"] is False


def test_forked_slots_do_not_share_random_streams() -> None:
    """torch's generator is seeded in the forkserver: each slot must reseed, as spawned ones
    did by importing torch themselves (an unseeded trial must not repeat another slot's)."""
    first = _run_probe(Slot(0, "cpu", None, 1))
    second = _run_probe(Slot(1, "cpu", None, 1))

    assert first["ppid"] == second["ppid"]  # both forks of the same forkserver
    names = ("torch", "numpy", "random")
    for name, a, b in zip(names, first["draws"], second["draws"], strict=True):
        assert a != b, f"{name}: both slots drew {a}"


# In a fresh interpreter: whether the resource tracker already runs changes the signal mask
# the forkserver inherits (workers/daemon.py ``_ensure_forkserver``).
_SIGTERM_THE_FORKSERVER = """
import os, signal, time
from multiprocessing import forkserver
from workers.daemon import slot_context, start_slot
from workers.devices import Slot

ctx = slot_context()
slot = start_slot(ctx, time.sleep, (0,), Slot(0, "cpu", None, 1))
slot.join(60)
pid = forkserver._forkserver._forkserver_pid  # the forkserver is this process's child
os.kill(pid, signal.SIGTERM)  # what `kill -TERM -PGID` or systemd sends it too
time.sleep(0.5)
alive = os.waitpid(pid, os.WNOHANG) == (0, 0)
again = start_slot(ctx, time.sleep, (0,), Slot(1, "cpu", None, 1))
again.join(60)
print(slot.exitcode, again.exitcode, alive, forkserver._forkserver._forkserver_pid == pid)
"""


def test_the_forkserver_outlives_a_sigterm_to_the_process_group() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SIGTERM_THE_FORKSERVER],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    # slots ran, the forkserver was alive after the signal and still served the second slot
    assert done.stdout.split() == ["0", "0", "True", "True"], done.stderr
