"""Where a trial keeps its checkpoint, and the bytes format (torch.save) of one."""

from __future__ import annotations

import io
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

import torch

logger = logging.getLogger(__name__)


class CheckpointStore(Protocol):
    """Holds the latest checkpoint of one trial."""

    def save(self, state: bytes) -> None:
        """Replace the stored checkpoint.

        Raises:
            OSError: the checkpoint could not be written.
        """
        ...

    def load(self) -> bytes | None:
        """Return the stored checkpoint, or None when there is none.

        Raises:
            OSError: the checkpoint could not be read.
        """
        ...


class InMemoryCheckpointStore:
    """Keeps the checkpoint in memory (tests, a worker that never restarts)."""

    def __init__(self, state: bytes | None = None) -> None:
        self.state = state
        self.saves = 0

    def save(self, state: bytes) -> None:
        self.state = state
        self.saves += 1

    def load(self) -> bytes | None:
        return self.state


class FileCheckpointStore:
    """Keeps the checkpoint in one file, replaced atomically on every save."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def save(self, state: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(state)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None


def to_bytes(obj: Any) -> bytes:
    """Serialize with torch.save."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def from_bytes(blob: bytes, *, trusted: bool = False) -> Any:
    """Deserialize torch.save bytes onto the CPU.

    Args:
        blob: bytes from :func:`to_bytes`.
        trusted: allow arbitrary pickled objects (a user's own checkpoint); otherwise only
            tensors and plain containers load (``weights_only=True``).
    """
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=not trusted)


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a model state_dict from a file holding one or a full checkpoint ``{"model": ...}``.

    Raises:
        ValueError: the file is missing or holds no state_dict (names ``init_checkpoint``).
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"training config key 'init_checkpoint': no file {path}") from None
    except Exception as exc:  # unpickling errors have many types
        raise ValueError(
            f"training config key 'init_checkpoint': cannot read {path}: {exc}"
        ) from exc
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"training config key 'init_checkpoint': {path} holds no state_dict")
    return obj
