"""The worker daemon: registers, runs one process per slot, keeps heartbeats going.

First SIGTERM/SIGINT: every slot finishes its current epoch, checkpoints and hands its trial
back, then the daemon exits. A second signal kills the slots at once.

Slots are forked from a forkserver that has imported torch and the training core once
(``SLOT_PRELOAD``), so a slot starts in milliseconds instead of importing everything itself:
with ``spawn``, 16 slots on 2 cores took ~10 s before the last one claimed a trial (see
benchmarks/RESULTS.md, "Many short trials"). Where there is no forkserver (not Linux), slots
are spawned as before.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing import forkserver, resource_tracker
from typing import TYPE_CHECKING, Any

from hposvc.schemas.workers import WorkerRegister
from workers.client import ServerClient
from workers.devices import Slot, describe, plan_slots
from workers.settings import WorkerSettings
from workers.slot import slot_main

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext
    from multiprocessing.process import BaseProcess

logger = logging.getLogger(__name__)

# What a slot imports before its first trial. None of them starts a Python thread or touches
# CUDA at import (CUDA starts in the slot, after slot_main sets CUDA_VISIBLE_DEVICES), nor
# torch's OpenMP pool, so set_num_threads in the slot still decides. Never run torch ops in
# the forkserver: once it has an OpenMP pool, a 2-thread slot hangs in its first parallel op
# (measured; tests/unit/workers/test_slot_start.py). numpy and scipy do start their OpenBLAS
# pools at import; OpenBLAS shuts them down around fork() itself.
# ``typer`` because each child runs the parent's ``-m`` module (``hposvc.cli``) again as
# ``__mp_main__``; preloading hposvc.cli itself would make runpy warn in every slot.
# The training core leaves scikit-learn (datasets, splits) and torchmetrics (with scipy) to its
# first use: ~1 s of imports that would delay every slot's first claim, also for user
# objectives that never need them. A slot pays it once, at its first built-in training; slots
# of one worker do that in parallel, so with a core per slot it costs the same wall time.
SLOT_PRELOAD = (
    "torch",
    "workers.training.runner",
    "workers.slot",
    "hposvc.logs",
    "typer",
)


def slot_context() -> BaseContext:
    """The multiprocessing context slots start from: a warm forkserver on Linux, else spawn."""
    if not sys.platform.startswith("linux") or "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(list(SLOT_PRELOAD))
    return ctx


def _ensure_forkserver(ctx: BaseContext) -> None:
    """Start the forkserver (if it is not running) with SIGTERM blocked.

    The forkserver keeps the blocked mask, so a SIGTERM sent to the whole process group
    (``kill -TERM -PGID``, systemd's default) does not kill it while its slots still finish
    their epoch: a dead forkserver reports every slot as exited (code 255) and the daemon
    would stop waiting for them. multiprocessing's resource tracker ignores SIGTERM for the
    same reason. Slots unblock it first thing (``prepare_slot_process``). Blocked, not
    ignored, so a signal to the daemon in this window is delivered afterwards, not lost.

    The resource tracker starts first: starting it unblocks SIGTERM in the caller (it blocks
    and unblocks around its own spawn), which would undo the mask the forkserver must inherit.
    """
    if ctx.get_start_method() != "forkserver":
        return
    resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def start_slot(
    ctx: BaseContext,
    target: Callable[..., Any],
    args: tuple[Any, ...],
    slot: Slot,
) -> BaseProcess:
    """Start one slot process running ``target(*args)`` from ``ctx``."""
    _ensure_forkserver(ctx)
    proc = ctx.Process(target=target, args=args, name=f"hposvc-slot-{slot.index}", daemon=False)
    proc.start()
    return proc


def run_worker(settings: WorkerSettings) -> int:
    """Run until stopped (or, with max_trials / exit_when_idle, until the slots are done)."""
    ctx = slot_context()
    # The forkserver imports torch while the daemon plans its slots (``--devices auto`` imports
    # torch here too, to count GPUs) and registers.
    _ensure_forkserver(ctx)
    slots = plan_slots(settings.devices, settings.slots_per_device, settings.threads_per_slot)
    client = ServerClient(
        settings.server_url,
        settings.token,
        unreachable_timeout=settings.unreachable_timeout_seconds,
    )
    host = socket.gethostname()
    worker_id = client.register(
        WorkerRegister(
            name=settings.name or f"{host}-{os.getpid()}",
            host=host,
            slots=len(slots),
            devices=describe(slots),
        )
    )
    logger.info(
        "worker %d registered with %d slot(s) on %s (slots start by %s)",
        worker_id,
        len(slots),
        ", ".join(describe(slots)),
        ctx.get_start_method(),
    )
    stop = ctx.Event()
    signals = {"count": 0}

    def on_signal(signum: int, _frame: object) -> None:
        signals["count"] += 1
        stop.set()
        if signals["count"] == 1:
            logger.info("signal %d: finishing current epochs, then handing trials back", signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def spawn(slot: Slot) -> BaseProcess:
        return start_slot(ctx, slot_main, (settings, worker_id, slot, stop), slot)

    procs = {slot.index: spawn(slot) for slot in slots}
    last_beat = 0.0
    try:
        while any(p.is_alive() for p in procs.values()):
            if signals["count"] >= 2:
                for p in procs.values():
                    p.kill()
                break
            now = time.monotonic()
            if now - last_beat >= settings.heartbeat_seconds:
                try:
                    client.heartbeat(worker_id)
                except Exception:
                    logger.warning("heartbeat failed", exc_info=True)
                last_beat = now
            for slot in slots:
                proc = procs[slot.index]
                if not proc.is_alive() and proc.exitcode not in (0, None) and not stop.is_set():
                    logger.warning("slot %d died (exit %s): restarting", slot.index, proc.exitcode)
                    procs[slot.index] = spawn(slot)
            time.sleep(0.2)
    finally:
        for p in procs.values():
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
        client.close()
    logger.info("worker %d stopped", worker_id)
    return 0
