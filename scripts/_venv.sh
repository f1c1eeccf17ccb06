# Sourced by the scripts: make .venv at the repository root and install the project into it.
# Usage: ensure_venv EXTRAS   (e.g. ensure_venv dev)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"

ensure_venv() {
  local extras=$1
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
  fi
  # The install compiles the request path's modules (setup.py, about a minute), so it runs
  # only when what it depends on changed: the packaging files, the compiled modules' sources,
  # MODELSERVE_COMPILE and the extras. Other sources are used in place (editable install).
  local state stamp="$venv/.modelserve-install-${extras//,/-}"
  state=$(
    cd "$root"
    echo "extras=$extras compile=${MODELSERVE_COMPILE:-1}"
    cat pyproject.toml setup.py $(grep -o '"src/[^"]*\.py"' setup.py | tr -d '"') | sha256sum
  )
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$state" ]; then
    return
  fi
  "$venv/bin/python" -m pip install -q -e "$root[$extras]"
  echo "$state" > "$stamp"
}
