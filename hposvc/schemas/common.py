"""Wire types shared by every resource."""

from __future__ import annotations

import math
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, Field

T = TypeVar("T")


class ErrorResponse(BaseModel):
    code: str
    detail: str
    errors: list[dict[str, Any]] | None = None


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


MAX_ID = 2**31 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


def _check_text(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode (no lone surrogates)") from exc
    return text


def _check_json(value: Any, where: str = "") -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where or 'value'}: must be a finite number (JSON has no NaN)")
    if isinstance(value, str):
        try:
            _check_text(value)
        except ValueError as exc:
            raise ValueError(f"{where or 'value'}: {exc}") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_json(str(key), where)
            _check_json(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")


def _plain_json(value: dict[str, Any]) -> dict[str, Any]:
    _check_json(value)
    return value


SafeText = Annotated[str, AfterValidator(_check_text)]
JSONObject = Annotated[
    dict[str, Any], AfterValidator(_plain_json), Field(description="Any JSON object.")
]
