"""The worker protocol's hot routes, answered without FastAPI's per-request machinery.

Every trial is a claim, a report per epoch and a complete (or, pruned, its metrics), and a
completed trial's model upload. Through FastAPI's routing, dependency injection and body
handling one of these costs the server about 0.7 ms of CPU besides the work itself
(measured: a report 1.3 ms against 0.25 ms in the service), which caps a server process at a
few hundred trials per second; an upload took 7 ms, half of it FastAPI's. This lane answers
the same routes with the same service calls, the same validation (the same pydantic models)
and the same error bodies. Anything it does not handle plainly goes on to FastAPI, which
answers it as always: a missing or wrong token (401), a body or query that does not validate
(422, with FastAPI's field-by-field message), a path id out of range. The routes stay
declared in FastAPI too, so the OpenAPI schema documents them and describes exactly what this
lane answers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from hposvc import errors
from hposvc.api.errors import error_body
from hposvc.api.limits import replay_body
from hposvc.schemas.common import MAX_ID
from hposvc.schemas.trials import (
    ClaimedTrial,
    ClaimRequest,
    CompletedTrial,
    CompleteRequest,
    ReportRequest,
    ReportResponse,
    UserAttrsRequest,
)
from hposvc.services import artifacts, trials

if TYPE_CHECKING:
    from hposvc.samplers.cache import StudyCaches

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_ROUTE = re.compile(r"^/api/v1/trials/(?:claim|([1-9][0-9]{0,18})/(report|complete|user-attrs))$")
_ARTIFACT = re.compile(r"^/api/v1/trials/([1-9][0-9]{0,18})/artifacts/(checkpoint|model)$")
_JSON = [(b"content-type", b"application/json")]


class _NotHere(Exception):  # noqa: N818 - a signal, not an error
    """FastAPI answers this request."""


@dataclass(frozen=True)
class _Hot:
    """A hot request's service calls.

    ``now`` answers at once or returns None having done nothing (a lock is held, the sampler
    takes long, the request is not ordinary); it returns the answer and what must run before
    it goes out (or None). ``later`` is the ordinary call, which may wait for locks.
    """

    now: Callable[[], tuple[BaseModel, Callable[[], None] | None] | None]
    later: Callable[[], BaseModel | None]


def _answered(model: BaseModel | None) -> tuple[BaseModel, None] | None:
    return None if model is None else (model, None)


def _hot(path: str, body: bytes, state: Any) -> _Hot:
    """The service calls a hot request makes, or ``_NotHere``."""
    match = _ROUTE.match(path)
    if match is None:
        raise _NotHere
    db, caches = state.db, state.caches
    try:
        payload = json.loads(body)
        if match.group(1) is None:
            claim = ClaimRequest.model_validate(payload)
            keys = {
                "worker_id": claim.worker_id,
                "study_name": claim.study,
                "request_id": claim.request_id,
            }
            return _Hot(
                now=lambda: _answered(trials.claim_now(db=db, caches=caches, **keys)),
                later=lambda: trials.claim(db=db, caches=caches, **keys),
            )
        trial_id = int(match.group(1))
        if trial_id > MAX_ID:
            raise _NotHere
        call = {"db": db, "caches": caches, "trial_id": trial_id}
        if match.group(2) == "report":
            report = ReportRequest.model_validate(payload)
            return _Hot(
                now=lambda: trials.report_now(**call, body=report),
                later=lambda: trials.report(**call, body=report),
            )
        if match.group(2) == "complete":
            done = CompleteRequest.model_validate(payload)
            return _Hot(
                now=lambda: trials.complete_now(**call, body=done),
                later=lambda: trials.complete(**call, body=done),
            )
        attrs = UserAttrsRequest.model_validate(payload)
        return _Hot(
            now=lambda: _answered(trials.set_user_attrs_now(**call, body=attrs)),
            later=lambda: trials.set_user_attrs(**call, body=attrs),
        )
    except (ValueError, ValidationError):  # JSONDecodeError is a ValueError
        raise _NotHere from None


def _authorized(scope: Scope, expected: bytes | None) -> bool:
    if expected is None:
        return True
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() != b"bearer":
                return False
            return hmac.compare_digest(hashlib.sha256(token.strip()).digest(), expected)
    return False


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The whole body, and whether the client is still there."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"", False
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _worker_id(query_string: bytes) -> int | None:
    """The upload's ``worker_id``, when it is the query's one plain, valid parameter."""
    try:
        pairs = parse_qsl(query_string.decode("ascii"), strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return None
    if len(pairs) != 1 or pairs[0][0] != "worker_id" or not pairs[0][1].isdigit():
        return None
    worker_id = int(pairs[0][1])
    return worker_id if 1 <= worker_id <= MAX_ID and pairs[0][1][0] != "0" else None


class _ClientGone(Exception):  # noqa: N818 - a signal, not an error
    """The client went away before its body was read."""


async def _body_chunks(receive: Receive) -> AsyncIterator[bytes]:
    """The request body as it streams in (``_ClientGone`` when the client leaves)."""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _ClientGone
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


class WorkerFastLane:
    """ASGI middleware: claim, report, complete, user-attrs and artifact uploads go straight
    to the services."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "PUT"
            and (upload := _ARTIFACT.match(scope["path"])) is not None
            and await self._upload(scope, receive, send, upload)
        ):
            return
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].startswith("/api/v1/trials/")
        ):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        body, connected = await _read_body(receive)
        if not connected:
            return
        try:
            if not _authorized(scope, state.token_hash):
                raise _NotHere
            hot = _hot(scope["path"], body, state)
        except _NotHere:
            await self.app(scope, replay_body(body, receive), send)
            return
        try:
            # On the event loop when it cannot wait: that saves the hand-off to a thread and
            # the threads' contention for the GIL (measured: 35% less server CPU per trial,
            # SQLite). Not on PostgreSQL, where every statement waits for a round trip that the
            # loop would wait for too.
            answered = hot.now() if state.db.is_sqlite else None
            if answered is None:
                result = await run_in_threadpool(hot.later)
            else:
                result, before_answer = answered
                if before_answer is not None:
                    await run_in_threadpool(before_answer)
        except errors.HposvcError as exc:
            status, content = error_body(exc)
            await _respond(send, status, json.dumps(content).encode())
            return
        if result is None:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await _respond(send, 200, result.model_dump_json().encode())
        for study_id in _studies_answered(result, scope["path"], state.caches):
            state.caches.answered(study_id)  # may work out its next sample, now it is idle

    async def _upload(
        self, scope: Scope, receive: Receive, send: Send, path: re.Match[str]
    ) -> bool:
        """Stream a worker's checkpoint or model into the store, as ``upload_artifact`` does;
        False, having read nothing, when FastAPI must answer it."""
        state = scope["app"].state
        trial_id, kind = int(path.group(1)), path.group(2)
        worker_id = _worker_id(scope.get("query_string", b""))
        if worker_id is None or trial_id > MAX_ID or not _authorized(scope, state.token_hash):
            return False
        keys = {"db": state.db, "trial_id": trial_id, "worker_id": worker_id, "kind": kind}
        try:
            if state.db.is_sqlite:  # one read by primary key: not worth a thread
                study_id, _ = artifacts.writable_trial(**keys)
            else:
                study_id, _ = await run_in_threadpool(artifacts.writable_trial, **keys)
            chunks = _body_chunks(receive)
            saved = await artifacts.save(state.artifacts, study_id, trial_id, kind, chunks)
        except errors.HposvcError as exc:
            status, content = error_body(exc)
            await _respond(send, status, json.dumps(content).encode())
            return True
        except _ClientGone:
            return True
        await _respond(send, 200, saved.model_dump_json().encode())
        return True


def _studies_answered(result: BaseModel, path: str, caches: StudyCaches) -> set[int]:
    """The studies a claim's, report's or complete's answer was about (none for user-attrs)."""
    studies = set()
    if isinstance(result, ClaimedTrial | CompletedTrial):
        studies.add(result.study_id)
    elif isinstance(result, ReportResponse):
        match = _ROUTE.match(path)
        study_id = caches.study_of_trial(int(match.group(1))) if match else None
        if study_id is not None:
            studies.add(study_id)
    next_trial = getattr(result, "next_trial", None)
    if next_trial is not None:
        studies.add(next_trial.study_id)
    return studies


async def _respond(send: Send, status: int, content: bytes) -> None:
    headers = [*_JSON, (b"content-length", str(len(content)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
