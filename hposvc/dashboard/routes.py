"""Dashboard pages and their assets (plotly.js included): nothing comes from a CDN.

Pages are HTML shells rendered here; the data comes from the REST API, read by the page's
script, so a page is the same for every replica and needs no session.
"""

from __future__ import annotations

import html
import json
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from string import Template

import plotly
from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from hposvc import __version__

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
PLOTLY_JS = Path(str(files("plotly"))) / "package_data" / "plotly.min.js"
PLOTLY_URL = f"/static/vendor/plotly-{plotly.__version__}.min.js"
IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}

router = APIRouter(include_in_schema=False)
static_files = StaticFiles(directory=STATIC)


@lru_cache(maxsize=16)
def _template(name: str) -> Template:
    return Template((HERE / "templates" / name).read_text(encoding="utf-8"))


def _page(name: str, title: str, script: str, **data: object) -> HTMLResponse:
    body = _template(f"{name}.html").substitute({k: html.escape(str(v)) for k, v in data.items()})
    page = _template("base.html").substitute(
        title=html.escape(title),
        body=body,
        script=script,
        data=html.escape(json.dumps(data)),
        plotly=PLOTLY_URL,
        version=__version__,
        nav_studies="current" if name in ("studies", "study", "trial") else "",
        nav_workers="current" if name == "workers" else "",
        nav_new="current" if name == "new" else "",
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})


@router.get(PLOTLY_URL)
def plotly_js() -> FileResponse:
    """plotly.js as the plotly package ships it, cached for a year (the URL has its version)."""
    return FileResponse(PLOTLY_JS, media_type="text/javascript", headers=IMMUTABLE)


@router.get("/", response_class=HTMLResponse)
def studies_page() -> HTMLResponse:
    """The studies list."""
    return _page("studies", "Studies", "studies.js")


@router.get("/new", response_class=HTMLResponse)
def new_study_page() -> HTMLResponse:
    """The new-study form."""
    return _page("new", "New study", "new.js")


@router.get("/studies/{study_name}", response_class=HTMLResponse)
def study_page(study_name: str) -> HTMLResponse:
    """One study: header, actions, trials table, charts."""
    return _page("study", study_name, "study.js", study=study_name)


@router.get("/trials/{trial_id}", response_class=HTMLResponse)
def trial_page(trial_id: int) -> HTMLResponse:
    """One trial."""
    return _page("trial", f"Trial {trial_id}", "trial.js", trial=trial_id)


@router.get("/workers", response_class=HTMLResponse)
def workers_page() -> HTMLResponse:
    """The workers."""
    return _page("workers", "Workers", "workers.js")
