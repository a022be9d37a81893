"""The worker daemon: registers, runs one process per slot, keeps heartbeats going.

First SIGTERM/SIGINT: every slot finishes its current epoch, checkpoints and hands its trial
back, then the daemon exits. A second signal kills the slots at once.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import socket
import time

from hposvc.schemas.workers import WorkerRegister
from workers.client import ServerClient
from workers.devices import describe, plan_slots
from workers.settings import WorkerSettings
from workers.slot import slot_main

logger = logging.getLogger(__name__)


def run_worker(settings: WorkerSettings) -> int:
    """Run until stopped (or, with max_trials / exit_when_idle, until the slots are done)."""
    slots = plan_slots(settings.devices, settings.slots_per_device)
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
        "worker %d registered with %d slot(s) on %s",
        worker_id,
        len(slots),
        ", ".join(describe(slots)),
    )
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    signals = {"count": 0}

    def on_signal(signum: int, _frame: object) -> None:
        signals["count"] += 1
        stop.set()
        if signals["count"] == 1:
            logger.info("signal %d: finishing current epochs, then handing trials back", signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def spawn(slot):
        proc = ctx.Process(
            target=slot_main,
            args=(settings, worker_id, slot, stop),
            name=f"hposvc-slot-{slot.index}",
            daemon=False,
        )
        proc.start()
        return proc

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
