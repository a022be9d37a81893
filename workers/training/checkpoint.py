"""Where a trial keeps its checkpoint, and the bytes format (torch.save) of one."""

from __future__ import annotations

import io
import logging
import os
import tempfile
import threading
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

    def requested(self) -> bool:
        """True when the holder wants a checkpoint at the end of this epoch, whatever the
        cadence (the worker is shutting down and hands the trial back after it)."""
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

    def requested(self) -> bool:
        return False


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

    def requested(self) -> bool:
        return False


class BackgroundCheckpointStore:
    """Saves into ``inner`` from a background thread, so training goes on during an upload.

    Only the newest checkpoint waiting to be saved is kept: one that a newer save replaces
    before its turn is dropped. While ``inner.requested()`` (the worker is stopping), a save
    is synchronous: it waits for the save in flight, drops the waiting one, and saves this
    one in the caller's thread, so whatever ``inner.save`` raises then reaches the caller.
    A background save's error is raised by the next :meth:`save`.
    """

    def __init__(self, inner: CheckpointStore) -> None:
        self.inner = inner
        self._cond = threading.Condition()
        self._waiting: bytes | None = None
        self._busy = False  # a save is in flight
        self._error: BaseException | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    def save(self, state: bytes) -> None:
        if self.inner.requested():
            self._settle(drop_waiting=True)
            self.inner.save(state)
            return
        with self._cond:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            if self._closed:
                raise RuntimeError("checkpoint store is closed")
            self._waiting = state
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, daemon=True, name="checkpoint-upload"
                )
                self._thread.start()
            self._cond.notify_all()

    def load(self) -> bytes | None:
        return self.inner.load()

    def requested(self) -> bool:
        return self.inner.requested()

    def flush(self) -> None:
        """Wait until every checkpoint handed to :meth:`save` is saved; raise a save's error."""
        self._settle(drop_waiting=False)
        with self._cond:
            if self._error is not None:
                error, self._error = self._error, None
                raise error

    def close(self) -> None:
        """Drop a waiting checkpoint, wait for the one in flight and stop the thread.

        Errors of background saves are logged, not raised: the trial is over.
        """
        self._settle(drop_waiting=True)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            if self._error is not None:
                logger.warning("a background checkpoint save failed: %s", self._error)
                self._error = None
        if self._thread is not None:
            self._thread.join()

    def _settle(self, *, drop_waiting: bool) -> None:
        with self._cond:
            if drop_waiting:
                self._waiting = None
            self._cond.wait_for(lambda: not self._busy and self._waiting is None)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._waiting is not None or self._closed)
                if self._waiting is None:
                    return  # closed
                state, self._waiting = self._waiting, None
                self._busy = True
            try:
                self.inner.save(state)
            except BaseException as exc:  # handed to the training thread by the next save()
                with self._cond:
                    self._error = exc
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


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
