#!/usr/bin/env bash
# Downloads into .whl/ (repo root, git-ignored) the wheels that the lent GPU machine needs to
# run hposvc and lacks (it has no network; Python 3.12 with its own torch, numpy, scipy...).
# Run here, where PyPI is reachable; then on the device:
#   run(command="bash benchmarks/device/run.sh", carry=[".whl"], timeout_s=600)
#
# Versions are NOT pinned here: they are read at run time from `.venv/bin/pip freeze`, so the
# device runs what the local venv (and CI) runs. Only the package NAMES are listed below.
set -euo pipefail
cd "$(dirname "$0")/../.."

# hposvc's needs that the device image lacks (its list: /work/.library/device/KINDS.md).
# Left out on purpose:
#   torch, numpy, scipy, scikit-learn, torchmetrics, typer, rich, httpx, pyyaml, pyarrow,
#   uvloop, tqdm, packaging, narwhals, annotated-doc: the device has them.
#   psycopg, psycopg-binary: PostgreSQL only (the device has no server; SQLAlchemy imports the
#     driver only for postgresql:// URLs, and tests/conftest.py skips on the ImportError).
#   websockets, watchfiles (uvicorn[standard] extras): no websocket routes, no --reload.
#   tzdata: psycopg needs it on Windows only.
PACKAGES=(
  optuna alembic Mako SQLAlchemy greenlet colorlog cmaes           # optuna + its storage
  fastapi starlette pydantic pydantic_core pydantic-settings python-dotenv
  annotated-types typing-inspection python-multipart               # the API layer
  opentelemetry-api                                                # fastapi imports it
  typing-extensions   # the device has one, of unknown version; pydantic needs >=4.16
  uvicorn httptools                                                # the ASGI server
  plotly                                                           # dashboard figures
)

freeze=$(.venv/bin/pip freeze)
norm() { local s=${1,,}; echo "${s//[_.]/-}"; }   # PEP 503 name normalisation

rm -rf .whl && mkdir -p .whl
for name in "${PACKAGES[@]}"; do
  version=$(awk -F'==' -v n="$(norm "$name")" \
    '{ m = tolower($1); gsub(/[_.]/, "-", m) } m == n { print $2 }' <<<"$freeze")
  if [[ -z $version ]]; then
    echo "fetch_wheels: $name is not installed in .venv" >&2
    exit 1
  fi
  # pip matches manylinux_2_N exactly: list the tags these packages' wheels use.
  python3 -m pip download -q --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl "$name==$version"
done
ls -1 .whl
du -sh .whl
