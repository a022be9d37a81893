"""Errors raised by services; api/errors.py maps each class to one HTTP status."""

from __future__ import annotations


class HposvcError(Exception):
    """Base class. ``code`` is a stable machine-readable name sent to clients."""

    code = "error"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class NotFoundError(HposvcError):
    code = "not_found"


class AlreadyExistsError(HposvcError):
    code = "already_exists"


class InvalidStateError(HposvcError):
    """The request is well formed but conflicts with the current state (HTTP 409)."""

    code = "invalid_state"


class LeaseLostError(InvalidStateError):
    """A worker acts on a trial it no longer holds."""

    code = "lease_lost"


class InvalidRequestError(HposvcError):
    code = "invalid_request"


class PayloadTooLargeError(InvalidRequestError):
    code = "too_large"


class StorageError(HposvcError):
    code = "storage_error"
