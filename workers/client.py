"""Typed HTTP client of the server's worker protocol, with retries and backoff.

A server that is down or answers 5xx is retried with exponential backoff for up to
``unreachable_timeout`` seconds; every call is idempotent on the server, so retrying is safe.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from hposvc.schemas.trials import ClaimedTrial, NextClaim
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


@dataclass(frozen=True)
class Response:
    status_code: int
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class _Connections:
    """One keep-alive connection per thread (a slot's lease keeper beats from its own thread).

    The standard library's client costs a quarter of the CPU per request that the general
    purpose HTTP clients do, and a worker makes a request per epoch of every trial.
    """

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"server URL must be http(s)://host[:port]: {base_url!r}")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/") + "/api/v1"
        self._headers = {"Host": parts.netloc, **headers}
        self._timeout = timeout
        self._local = threading.local()
        # Weakly held: a thread's connection closes with its thread (a lease keeper per trial).
        self._all: weakref.WeakSet[http.client.HTTPConnection] = weakref.WeakSet()
        self._all_lock = threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = kind(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
            with self._all_lock:
                self._all.add(conn)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def request(
        self, method: str, url: str, *, body: bytes | None, headers: dict[str, str]
    ) -> Response:
        """Send one request; a kept-alive connection the server closed meanwhile is reopened.

        Raises:
            OSError, http.client.HTTPException: the server could not be reached.
        """
        target = self._prefix + url
        all_headers = {**self._headers, **headers}
        for attempt in range(2):
            conn = self._connection()
            reused = conn.sock is not None
            try:
                conn.request(method, target, body=body, headers=all_headers)
                raw = conn.getresponse()
                response = Response(raw.status, raw.read())
            except (OSError, http.client.HTTPException):
                self._drop()
                if reused and attempt == 0:
                    continue  # the server closed an idle connection: once more on a new one
                raise
            if raw.will_close:
                self._drop()
            return response
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._all_lock:
            for conn in list(self._all):
                conn.close()
            self._all.clear()


class ServerClient:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        unreachable_timeout: float = 900.0,
        timeout: float = 60.0,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = _Connections(base_url, headers, timeout)
        self.unreachable_timeout = unreachable_timeout

    def close(self) -> None:
        self._http.close()

    def _call(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
    ) -> Response:
        headers = {}
        if json_body is not None:
            content = json.dumps(
                json_body, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode()
            headers["Content-Type"] = "application/json"
        elif content is not None:
            headers["Content-Type"] = "application/octet-stream"
        if params:
            url = f"{url}?{urlencode(params)}"
        deadline = time.monotonic() + self.unreachable_timeout
        delay = 0.2
        while True:
            try:
                response = self._http.request(method, url, body=content, headers=headers)
                if response.status_code < 500:
                    break
                problem = f"HTTP {response.status_code}"
            except (OSError, http.client.HTTPException) as exc:
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
        return self._call("POST", "/workers", json_body=body.model_dump()).json()["id"]

    def heartbeat(self, worker_id: int) -> None:
        self._call("POST", f"/workers/{worker_id}/heartbeat")

    def claim(self, worker_id: int, study: str | None, request_id: str) -> ClaimedTrial | None:
        body = {"worker_id": worker_id, "study": study, "request_id": request_id}
        response = self._call("POST", "/trials/claim", json_body=body)
        if response.status_code == 204:
            return None
        return ClaimedTrial.model_validate(response.json())

    def report(self, trial_id: int, worker_id: int, step: int, value: float) -> bool:
        return self.report_then_claim(trial_id, worker_id, step, value, None)[0]

    def report_then_claim(
        self,
        trial_id: int,
        worker_id: int,
        step: int,
        value: float,
        next_claim: NextClaim | None,
    ) -> tuple[bool, ClaimedTrial | None]:
        """Whether to prune, and the next trial claimed with ``next_claim`` if it prunes."""
        body: dict[str, Any] = {"worker_id": worker_id, "step": step, "value": value}
        if next_claim is not None:
            body["next_claim"] = next_claim.model_dump()
        answer = self._call("POST", f"/trials/{trial_id}/report", json_body=body).json()
        return bool(answer["should_prune"]), _next_trial(answer)

    def complete(
        self,
        trial_id: int,
        worker_id: int,
        values: list[float],
        user_attrs: dict[str, Any],
        next_claim: NextClaim | None = None,
    ) -> ClaimedTrial | None:
        """Complete the trial; the next trial, claimed with ``next_claim``, if there is one."""
        body: dict[str, Any] = {"worker_id": worker_id, "values": values, "user_attrs": user_attrs}
        if next_claim is not None:
            body["next_claim"] = next_claim.model_dump()
        answer = self._call("POST", f"/trials/{trial_id}/complete", json_body=body).json()
        return _next_trial(answer)

    def fail(
        self,
        trial_id: int,
        worker_id: int,
        reason: str,
        user_attrs: dict[str, Any],
        *,
        retry: bool = True,
    ) -> None:
        """Fail a trial; ``retry=False`` when the same parameters would fail again."""
        body = {
            "worker_id": worker_id,
            "reason": reason[-60_000:],
            "user_attrs": user_attrs,
            "retry": retry,
        }
        self._call("POST", f"/trials/{trial_id}/fail", json_body=body)

    def set_user_attrs(self, trial_id: int, worker_id: int, user_attrs: dict[str, Any]) -> None:
        body = {"worker_id": worker_id, "user_attrs": user_attrs}
        self._call("POST", f"/trials/{trial_id}/user-attrs", json_body=body)

    def release(self, trial_id: int, worker_id: int, reason: str) -> None:
        body = {"worker_id": worker_id, "reason": reason}
        self._call("POST", f"/trials/{trial_id}/release", json_body=body)

    def upload(self, trial_id: int, worker_id: int, kind: str, data: bytes) -> None:
        self._call(
            "PUT",
            f"/trials/{trial_id}/artifacts/{kind}",
            params={"worker_id": worker_id},
            content=data,
        )

    def download(self, trial_id: int, kind: str) -> bytes | None:
        """A trial's artifact (a retry's checkpoint falls back to its earlier attempts')."""
        try:
            return self._call("GET", f"/trials/{trial_id}/artifacts/{kind}").content
        except RequestRejected as exc:
            if exc.status == 404:
                return None
            raise


def _detail(response: Response) -> str:
    text = response.content.decode(errors="replace")
    try:
        return str(json.loads(text).get("detail", text))
    except (ValueError, AttributeError):
        return text


def _next_trial(answer: dict[str, Any]) -> ClaimedTrial | None:
    nxt = answer.get("next_trial")
    return None if nxt is None else ClaimedTrial.model_validate(nxt)
