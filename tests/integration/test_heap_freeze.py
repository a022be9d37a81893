"""A process that serves one app moves what its startup left out of the cyclic collector's reach.

Without it, the first full collection after startup walks every object that imports and
migrations left (about 90 ms with every request waiting, under the dispatch benchmark).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hposvc import cli
from hposvc.app import create_app
from hposvc.settings import Settings


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Start and end with nothing frozen: tests share this process."""
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
def test_an_app_frozen_at_startup_freezes_the_heap(settings: Settings) -> None:
    app = create_app(settings, migrate=False, freeze_startup_heap=True)
    assert gc.get_freeze_count() == 0
    with TestClient(app) as client:
        assert gc.get_freeze_count() > 0
        assert client.get("/health").status_code == 200


@pytest.mark.usefixtures("unfrozen")
def test_an_app_leaves_the_collector_alone_by_default(settings: Settings) -> None:
    with TestClient(create_app(settings, migrate=False)) as client:
        assert client.get("/health").status_code == 200
        assert gc.get_freeze_count() == 0


@pytest.mark.usefixtures("unfrozen")
def test_the_server_command_serves_an_app_that_freezes_at_startup(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[Any] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **_: served.append(app))
    result = CliRunner().invoke(
        cli.app, ["server", "--database-url", settings.database_url, "--port", "1"]
    )
    assert result.exit_code == 0, result.output
    (app,) = served
    with TestClient(app):
        assert gc.get_freeze_count() > 0
