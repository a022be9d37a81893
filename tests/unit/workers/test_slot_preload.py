"""What a worker's forkserver imports before its first slot starts (``SLOT_PRELOAD``) stays
light: scikit-learn and torchmetrics (with scipy) load at a slot's first built-in training,
not before every slot's first claim (workers/daemon.py)."""

from __future__ import annotations

import subprocess
import sys

from workers.daemon import SLOT_PRELOAD


def test_the_slot_preload_leaves_scikit_learn_torchmetrics_and_scipy_out() -> None:
    code = (
        f"import sys\nfor m in {list(SLOT_PRELOAD)!r}: __import__(m)\n"
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'sklearn', 'torchmetrics', 'scipy'})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == ""


def test_the_training_core_still_loads_them_when_it_trains() -> None:
    code = (
        "import sys\nfrom workers.training.runner import run_trial\n"
        "from workers.training.pruning import NullReporter\n"
        "cfg = {'dataset': 'iris', 'model': 'mlp', 'max_epochs': 1}\n"
        "run_trial(cfg, {}, NullReporter(), None)\n"
        "print('sklearn' in sys.modules, 'torchmetrics' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split()[-2:] == ["True", "True"]
