"""Training-core throughput against a minimal hand-written PyTorch loop, side by side.

    .venv/bin/python benchmarks/training_throughput.py [--quick] [--threads 2] [--strict]
    python3 benchmarks/training_throughput.py --device cuda       # on a GPU machine

For the digits CNN and an MLP 64-256-256-10 on digits, each repeat trains the same model
(same seed, same resident tensors, Adam lr 1e-3, batch 64) once with ``fit()`` and once with
the plainest loop, interleaved (alternating which goes first), and records per-epoch
samples/second:

- train: the training phase only (``fit()``'s own ``train_seconds``; the plain loop's timer
  around the same phase);
- epoch: the whole epoch incl. validation (``fit()``: wall time between two reports to the
  reporter; plain: training plus a forward pass over the validation split, loss and accuracy).

The first epoch of every run is warm-up and is dropped; the table gives medians over the rest.
The target is core/plain >= 0.95 on the training phase. Timings on a shared machine are noisy:
the load average is printed with the results. This is a benchmark, not a test: nothing here
runs under pytest.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.training.config import TrainConfig  # noqa: E402
from workers.training.data import load_data  # noqa: E402
from workers.training.loop import fit  # noqa: E402
from workers.training.models import build_model  # noqa: E402
from workers.training.pruning import NullReporter  # noqa: E402

TARGET = 0.95
MODELS = {
    "digits CNN (2x conv16, fc 64)": {"model": "cnn"},
    "MLP 64-256-256-10": {"model": "mlp", "width": 256, "layers": 2},
}


class _EpochClock(NullReporter):
    """A reporter that also timestamps every report: one per epoch, after validation."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = [time.perf_counter()]

    def report(self, step: int, value: float) -> bool:
        self.times.append(time.perf_counter())
        return super().report(step, value)


def _core(cfg: TrainConfig, data, seed: int) -> tuple[list[float], list[float]]:
    """(train, epoch) samples/second of each epoch of ``fit()``."""
    torch.manual_seed(seed)
    model = build_model(cfg, data.input_shape, data.num_classes).to(data.train.x.device)
    clock = _EpochClock()
    result = fit(model, data, cfg, reporter=clock)
    n = data.train.x.shape[0]
    train = [h["samples_per_second"] for h in result.history]
    epoch = [n / (b - a) for a, b in zip(clock.times, clock.times[1:], strict=False)]
    return train, epoch


def _plain(cfg: TrainConfig, data, seed: int) -> tuple[list[float], list[float]]:
    """(train, epoch) samples/second of each epoch of the plainest loop on the same tensors."""
    torch.manual_seed(seed)
    x, y = data.train.x, data.train.y
    x_val, y_val = data.val.x, data.val.y
    model = build_model(cfg, data.input_shape, data.num_classes).to(x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    n, batch = x.shape[0], cfg.batch_size
    on_gpu = x.device.type == "cuda"
    train, epoch = [], []
    for _ in range(cfg.max_epochs):
        started = time.perf_counter()
        model.train()
        perm = torch.randperm(n, device=x.device)
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if on_gpu:  # the kernels queued so far, done (fit() reads its loss at the same point)
            torch.cuda.synchronize()
        trained = time.perf_counter()
        model.eval()
        with torch.inference_mode():
            out = model(x_val)
            val_loss = F.cross_entropy(out, y_val).item()
            val_acc = (out.argmax(1) == y_val).float().mean().item()
        assert val_loss == val_loss and 0 <= val_acc <= 1  # noqa: PLR0124 (NaN check)
        done = time.perf_counter()
        train.append(n / (trained - started))
        epoch.append(n / (done - started))
    return train, epoch


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return f"{device}, {torch.cuda.get_device_name(torch.device(device))}"
    return device


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats of 4 epochs")
    parser.add_argument("--repeats", type=int, default=None, help="runs per loop (default 7)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default 6)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda")
    parser.add_argument(
        "--strict", action="store_true", help=f"exit 1 when a train ratio is below {TARGET}"
    )
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    epochs = args.epochs or (4 if args.quick else 6)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]

    rows = []
    below = False
    for name, model_params in MODELS.items():
        cfg = TrainConfig.from_dict(
            {"dataset": "digits", "max_epochs": epochs, "batch_size": 64, **model_params}
        ).with_task_defaults("classification")
        data = load_data(cfg, args.device)
        samples = {("core", "train"): [], ("core", "epoch"): [], ("plain", "train"): []}
        samples[("plain", "epoch")] = []
        for seed in range(repeats):
            order = (("core", _core), ("plain", _plain))
            for who, run in order if seed % 2 == 0 else order[::-1]:  # no order bias
                train, epoch = run(cfg, data, seed)
                samples[(who, "train")] += train[1:]  # epoch 1 is warm-up
                samples[(who, "epoch")] += epoch[1:]
        for phase in ("train", "epoch"):
            core = statistics.median(samples[("core", phase)])
            plain = statistics.median(samples[("plain", phase)])
            ratio = core / plain
            below |= phase == "train" and ratio < TARGET
            rows.append((name, phase, core, plain, ratio))

    command = " ".join([Path(sys.executable).name, *sys.argv])
    lines = [
        "### Training throughput: core `fit()` vs a plain PyTorch loop",
        "",
        f"- machine: {_cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; Python {platform.python_version()}",
        f"- device: {_device_name(args.device)}",
        f"- command: `{command}`",
        f"- {repeats} repeats x {epochs} epochs per loop (epoch 1 dropped), median samples/s; "
        f"train = training phase, epoch = whole epoch incl. validation; target >= {TARGET}x",
        f"- load average: {load_before:.2f} before, {os.getloadavg()[0]:.2f} after",
        "",
        "| model | phase | core samples/s | plain samples/s | core / plain |",
        "|---|---|---:|---:|---:|",
        *(
            f"| {name} | {phase} | {core:,.0f} | {plain:,.0f} | {ratio:.3f} |"
            for name, phase, core, plain, ratio in rows
        ),
        "",
        f"training phase: {'below target' if below else 'target met'} "
        f"(>= {TARGET}x the plain loop)",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 1 if below and args.strict else 0


if __name__ == "__main__":
    raise SystemExit(main())
