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
  # Installs only what is missing; quick when everything is there already.
  "$venv/bin/python" -m pip install -q -e "$root[$extras]"
}
