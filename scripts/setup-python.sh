#!/usr/bin/env bash
# Creates .venv with the third-party checkers the tests use (PyIceberg, DuckDB, geopandas, moto).
# Idempotent: does nothing when .venv already matches tests/python/requirements.txt.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
req="$root/tests/python/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
# Test processes run this at the same time: one installs, the others wait and then find it done.
exec 9>"$root/.venv.lock"
flock 9
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
echo "python checkers installed in $venv"
