# Sourced by scripts/demo.sh and scripts/test.sh: installs what the project needs on a
# fresh Debian machine (system packages, then a virtualenv in .venv) and is a no-op
# when everything is already there. Usage: source scripts/bootstrap.sh [runtime|dev]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PROJECT_ROOT=$(pwd)
_profile=${1:-runtime}

_sudo=""
if [ "$(id -u)" -ne 0 ]; then _sudo="sudo"; fi

_missing=()
# mysqlclient compiles against the MariaDB client headers, found through pkg-config.
command -v pkg-config >/dev/null 2>&1 || _missing+=(pkg-config)
if ! pkg-config --exists mariadb 2>/dev/null && ! pkg-config --exists mysqlclient 2>/dev/null; then
  _missing+=(libmariadb-dev)
fi
command -v gcc >/dev/null 2>&1 || _missing+=(gcc)
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || _missing+=(python3-venv)
if [ ${#_missing[@]} -gt 0 ]; then
  echo "bootstrap: installing system packages: ${_missing[*]}"
  $_sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $_sudo apt-get install -y -qq "${_missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  python3 -m venv .venv
fi

_reqs=requirements.txt
[ "$_profile" = dev ] && _reqs=requirements-dev.txt
_stamp=".venv/.installed-$_profile"
_want=$(cat requirements.txt "$_reqs" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$_stamp" 2>/dev/null)" != "$_want" ]; then
  echo "bootstrap: installing Python packages from $_reqs"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -r "$_reqs"
  echo "$_want" > "$_stamp"
fi
PY="$PROJECT_ROOT/.venv/bin/python"
export PY
