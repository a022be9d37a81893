"""One table from service errors to HTTP statuses, and the error body every 4xx/5xx uses."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hposvc import errors

logger = logging.getLogger(__name__)

STATUS: list[tuple[type[errors.HposvcError], int]] = [
    (errors.NotFoundError, 404),
    (errors.AlreadyExistsError, 409),
    (errors.InvalidStateError, 409),
    (errors.PayloadTooLargeError, 413),
    (errors.InvalidRequestError, 422),
    (errors.StorageError, 503),
]


def _body(code: str, detail: str, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "detail": detail}
    if extra is not None:
        body["errors"] = extra
    return body


def describe_validation_errors(raw: list[Any]) -> tuple[str, list[dict[str, Any]]]:
    """Pydantic errors as one readable line naming each field, plus the structured list."""
    items, lines = [], []
    for err in raw:
        loc = _readable_loc([str(p) for p in err.get("loc", ())])
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        # Validators of nested free-form fields name the key they refuse: "sigma0: ...".
        inner = _INNER_KEY.match(msg)
        if inner:
            loc, msg = [*loc, inner.group(1)], inner.group(2)
        where = ".".join(loc) or "body"
        lines.append(f"{where}: {msg}")
        items.append({"loc": loc, "msg": msg, "type": err.get("type", "")})
    return "; ".join(lines), items


_UNION_TAGS = {"float", "int", "categorical"}
_INNER_KEY = re.compile(r"^([A-Za-z_][\w.\[\]-]*): (.+)$", re.S)


def _readable_loc(loc: list[str]) -> list[str]:
    """Drop what pydantic adds to locations: 'body', validator names, union tags."""
    out: list[str] = []
    for part in loc:
        if part == "body" and not out or "[" in part or "(" in part:
            continue
        if part in _UNION_TAGS and len(out) >= 2 and out[-2] == "search_space":
            continue
        out.append(part)
    return out


def error_body(exc: errors.HposvcError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body a service error is answered with."""
    status = next((s for cls, s in STATUS if isinstance(exc, cls)), 500)
    return status, _body(exc.code, exc.detail)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.HposvcError)
    async def _service_error(_request: Request, exc: errors.HposvcError) -> JSONResponse:
        status, body = error_body(exc)
        return JSONResponse(body, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        raw = list(exc.errors())
        detail, items = describe_validation_errors(raw)
        if any(err.get("type") == "json_invalid" for err in raw):
            ctx = raw[0].get("ctx") or {}
            where = raw[0].get("loc", ("body", "?"))[-1]
            detail = f"body: malformed JSON at position {where}: {ctx.get('error', 'invalid')}"
            return JSONResponse(_body("malformed_body", detail, items), status_code=422)
        return JSONResponse(_body("invalid_request", detail, items), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        return JSONResponse(
            _body(code.get(exc.status_code, "http_error"), str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return JSONResponse(_body("internal_error", "internal server error"), status_code=500)
