"""Typed HTTP client of the server's worker protocol, with retries and backoff.

A server that is down or answers 5xx is retried with exponential backoff for up to
``unreachable_timeout`` seconds; every call is idempotent on the server, so retrying is safe.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import httpx

from hposvc.schemas.trials import ClaimedTrial
from hposvc.schemas.workers import WorkerRegister

logger = logging.getLogger(__name__)


class LeaseLost(Exception):  # noqa: N818 - a condition, not a bug
    """The server says this worker no longer holds the trial (HTTP 409)."""


class ServerUnreachable(Exception):  # noqa: N818
    """The server could not be reached for longer than the configured patience."""


class RequestRejected(Exception):  # noqa: N818
    """The server refused a request (4xx other than 409)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class ServerClient:
    def __init__(
        self, base_url: str, token: str | None = None, *, unreachable_timeout: float = 900.0
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + "/api/v1", headers=headers, timeout=60.0
        )
        self.unreachable_timeout = unreachable_timeout

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        deadline = time.monotonic() + self.unreachable_timeout
        delay = 0.2
        while True:
            try:
                response = self._http.request(method, url, **kwargs)
                if response.status_code < 500:
                    break
                problem = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() + delay > deadline:
                raise ServerUnreachable(f"{method} {url}: {problem}")
            logger.warning("%s %s failed (%s); retrying in %.1f s", method, url, problem, delay)
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 30.0)
        if response.status_code == 409:
            raise LeaseLost(_detail(response))
        if response.status_code >= 400:
            raise RequestRejected(response.status_code, _detail(response))
        return response

    # -- protocol ---------------------------------------------------------------------------

    def register(self, body: WorkerRegister) -> int:
        return self._call("POST", "/workers", json=body.model_dump()).json()["id"]

    def heartbeat(self, worker_id: int) -> None:
        self._call("POST", f"/workers/{worker_id}/heartbeat")

    def claim(self, worker_id: int, study: str | None, request_id: str) -> ClaimedTrial | None:
        body = {"worker_id": worker_id, "study": study, "request_id": request_id}
        response = self._call("POST", "/trials/claim", json=body)
        if response.status_code == 204:
            return None
        return ClaimedTrial.model_validate(response.json())

    def report(self, trial_id: int, worker_id: int, step: int, value: float) -> bool:
        body = {"worker_id": worker_id, "step": step, "value": value}
        return bool(
            self._call("POST", f"/trials/{trial_id}/report", json=body).json()["should_prune"]
        )

    def complete(
        self, trial_id: int, worker_id: int, values: list[float], user_attrs: dict[str, Any]
    ) -> None:
        body = {"worker_id": worker_id, "values": values, "user_attrs": user_attrs}
        self._call("POST", f"/trials/{trial_id}/complete", json=body)

    def fail(self, trial_id: int, worker_id: int, reason: str, user_attrs: dict[str, Any]) -> None:
        body = {"worker_id": worker_id, "reason": reason[-60_000:], "user_attrs": user_attrs}
        self._call("POST", f"/trials/{trial_id}/fail", json=body)

    def set_user_attrs(self, trial_id: int, worker_id: int, user_attrs: dict[str, Any]) -> None:
        body = {"worker_id": worker_id, "user_attrs": user_attrs}
        self._call("POST", f"/trials/{trial_id}/user-attrs", json=body)

    def release(self, trial_id: int, worker_id: int, reason: str) -> None:
        body = {"worker_id": worker_id, "reason": reason}
        self._call("POST", f"/trials/{trial_id}/release", json=body)

    def upload(self, trial_id: int, worker_id: int, kind: str, data: bytes) -> None:
        self._call(
            "PUT",
            f"/trials/{trial_id}/artifacts/{kind}",
            params={"worker_id": worker_id},
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )

    def download(self, trial_id: int, kind: str) -> bytes | None:
        """A trial's artifact (a retry's checkpoint falls back to its earlier attempts')."""
        try:
            return self._call("GET", f"/trials/{trial_id}/artifacts/{kind}").content
        except RequestRejected as exc:
            if exc.status == 404:
                return None
            raise


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text
