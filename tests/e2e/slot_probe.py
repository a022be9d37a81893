"""A user objective that reports the slot process it ran in (tests/e2e/test_worker_slots.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def where_am_i(_params: dict[str, Any], ctx: Any) -> dict[str, float]:
    """Reports and returns 0; its metrics: the slot's process tree, GPU env, torch state."""
    import torch

    parent = os.getppid()
    # /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after ")".
    grandparent = int(Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()[1])
    ctx.report(1, 0.0)
    return {
        "value": 0.0,
        "parent_pid": float(parent),
        "grandparent_pid": float(grandparent),
        "cuda_visible_devices": float(os.environ.get("CUDA_VISIBLE_DEVICES", "-1")),
        "cuda_initialized": float(torch.cuda.is_initialized()),
        "torch_threads": float(torch.get_num_threads()),
    }
