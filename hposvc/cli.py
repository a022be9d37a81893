"""The ``hposvc`` command line: server, db, study."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="hposvc: hyperparameter optimization as a service.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
study_app = typer.Typer(help="Studies, through the REST API.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(study_app, name="study")

ServerOpt = Annotated[str, typer.Option("--server", envvar="HPOSVC_SERVER_URL")]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="HPOSVC_TOKEN")]


@app.command()
def server(
    host: Annotated[str | None, typer.Option(help="Address to bind (HPOSVC_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (HPOSVC_PORT).")] = None,
    database_url: Annotated[str | None, typer.Option(help="HPOSVC_DATABASE_URL.")] = None,
) -> None:
    """Run the API server (upgrades the schema first)."""
    import uvicorn

    from hposvc.app import create_app
    from hposvc.logs import configure_logging
    from hposvc.settings import Settings

    overrides = {
        k: v
        for k, v in {"host": host, "port": port, "database_url": database_url}.items()
        if v is not None
    }
    settings = Settings(**overrides)
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings, freeze_startup_heap=True),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=5,
    )


@app.command()
def worker(
    server: ServerOpt = "http://127.0.0.1:8000",
    token: TokenOpt = None,
    devices: Annotated[str, typer.Option(help="auto | cpu | GPU ids like 0,1")] = "auto",
    slots_per_device: Annotated[int, typer.Option(min=1, help="Trials sharing a device.")] = 1,
    threads_per_slot: Annotated[
        int | None, typer.Option(min=1, help="torch threads per slot (default: cores / slots).")
    ] = None,
    study: Annotated[str | None, typer.Option(help="Only take trials of this study.")] = None,
    name: Annotated[str | None, typer.Option(help="Worker name (default host-pid).")] = None,
    max_trials: Annotated[int | None, typer.Option(help="Per slot, then exit.")] = None,
    exit_when_idle: Annotated[
        float | None, typer.Option(help="Exit after N idle seconds.")
    ] = None,
    log_level: str = "INFO",
) -> None:
    """Run a worker daemon: one process per slot pulls trials from the server and trains."""
    from hposvc.logs import configure_logging
    from workers.daemon import run_worker
    from workers.settings import WorkerSettings

    configure_logging(log_level)
    settings = WorkerSettings(
        server_url=server,
        token=token,
        devices=devices,
        slots_per_device=slots_per_device,
        threads_per_slot=threads_per_slot,
        study=study,
        name=name,
        max_trials=max_trials,
        exit_when_idle_seconds=exit_when_idle,
        log_level=log_level,
    )
    raise typer.Exit(run_worker(settings))


@app.command()
def demo(
    database_url: Annotated[str, typer.Option(help="Where the demo keeps its studies.")] = (
        "sqlite:///hposvc-demo.db"
    ),
    port: int = 8000,
    slots: Annotated[int, typer.Option(min=1, help="CPU worker slots.")] = 2,
    spec: Annotated[
        Path | None, typer.Option(help="Study spec (default: the digits CNN).")
    ] = None,
    keep_serving: Annotated[bool, typer.Option(help="Keep the server up afterwards.")] = False,
) -> None:
    """Run an example study end to end: server, a local CPU worker, a CNN on digits."""
    from hposvc.demo import EXAMPLE, run_demo
    from hposvc.logs import configure_logging

    configure_logging("WARNING")
    code = run_demo(
        database_url=database_url,
        port=port,
        slots=slots,
        spec_path=spec or EXAMPLE,
        keep_serving=keep_serving,
    )
    raise typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Upgrade the database schema (the server also does this on start)."""
    from hposvc.db.migrate import upgrade
    from hposvc.settings import get_settings

    upgrade(get_settings().database_url, revision)
    typer.echo(f"database at {revision}")


def _client(server: str, token: str | None):
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.rstrip("/") + "/api/v1", headers=headers, timeout=30)


def _check(response) -> dict:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        typer.echo(f"error {response.status_code}: {detail}", err=True)
        raise typer.Exit(1)
    return response.json() if response.content else {}


@study_app.command("create")
def study_create(
    spec_file: Path,
    server: ServerOpt = "http://127.0.0.1:8000",
    token: TokenOpt = None,
) -> None:
    """Create a study from a YAML or JSON spec file."""
    is_yaml = spec_file.suffix.lower() in (".yaml", ".yml")
    with _client(server, token) as client:
        body = _check(
            client.post(
                "/studies",
                content=spec_file.read_bytes(),
                headers={"Content-Type": "application/yaml" if is_yaml else "application/json"},
            )
        )
    typer.echo(f"created study {body['name']} (id {body['id']})")


@study_app.command("list")
def study_list(server: ServerOpt = "http://127.0.0.1:8000", token: TokenOpt = None) -> None:
    """List studies."""
    from rich.console import Console
    from rich.table import Table

    with _client(server, token) as client:
        page = _check(client.get("/studies", params={"limit": 1000}))
    table = Table("id", "name", "state", "sampler", "trials")
    for s in page["items"]:
        budget = s["spec"]["budget"]["max_trials"]
        table.add_row(
            str(s["id"]),
            s["name"],
            s["state"],
            s["spec"]["sampler"]["name"],
            f"{s['budget_used']}/{budget}",
        )
    Console().print(table)


@study_app.command("show")
def study_show(
    name: str, server: ServerOpt = "http://127.0.0.1:8000", token: TokenOpt = None
) -> None:
    """Show a study: counts per state and the best trial."""
    with _client(server, token) as client:
        body = _check(client.get(f"/studies/{name}"))
    json.dump(body, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _act(action: str):
    def command(
        name: str, server: ServerOpt = "http://127.0.0.1:8000", token: TokenOpt = None
    ) -> None:
        with _client(server, token) as client:
            body = _check(client.post(f"/studies/{name}/actions", json={"action": action}))
        typer.echo(f"study {name} is {body['state']}")

    command.__doc__ = f"{action.capitalize()} a study."
    return command


for _action in ("pause", "resume", "stop"):
    study_app.command(_action)(_act(_action))


if __name__ == "__main__":
    app()
