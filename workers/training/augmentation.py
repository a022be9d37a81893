"""Image augmentation on device tensors, applied per training batch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from workers.training.config import Augment


class Augmenter:
    """Random horizontal flip, integer pixel shift and Gaussian noise, per sample.

    Everything runs batched on the batch's device; labels are never touched.
    """

    def __init__(self, settings: Augment, sample_shape: tuple[int, ...]) -> None:
        if (settings.flip or settings.shift) and len(sample_shape) != 3:
            raise ValueError(
                "training config key 'augment': flip and shift need image samples (model cnn), "
                f"got samples of shape {sample_shape}"
            )
        self.flip = settings.flip
        self.shift = settings.shift
        self.noise = settings.noise

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if self.flip:
            flip = torch.rand(n, 1, 1, 1, device=x.device) < 0.5
            x = torch.where(flip, x.flip(-1), x)
        if self.shift:
            x = self._shift(x)
        if self.noise:
            x = x + self.noise * torch.randn_like(x)
        return x

    def _shift(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        shifts = torch.randint(-self.shift, self.shift + 1, (n, 2), device=x.device)
        theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = 1.0
        theta[:, 1, 1] = 1.0
        # affine_grid works in [-1, 1]: one pixel is 2 / size; nearest sampling keeps pixels exact
        theta[:, 0, 2] = shifts[:, 0].to(x.dtype) * (2.0 / w)
        theta[:, 1, 2] = shifts[:, 1].to(x.dtype) * (2.0 / h)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="nearest", padding_mode="border", align_corners=False)
