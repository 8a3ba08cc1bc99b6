#!/usr/bin/env bash
# Installs Debian's headless Chromium, which the status page test drives, when it is missing.
# Idempotent: returns at once when `chromium` is on PATH. Needs root (apt) on a fresh machine.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt_get() { if [ "$(id -u)" = 0 ]; then apt-get "$@"; else sudo apt-get "$@"; fi; }
# A fresh machine's package lists may predate the current Chromium security update.
apt_get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || {
  apt_get update -qq
  apt_get install -y -qq --no-install-recommends chromium >/dev/null
}
echo "chromium installed: $(chromium --version)"
