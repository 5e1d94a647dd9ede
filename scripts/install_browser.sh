#!/usr/bin/env bash
# Headless Chromium for the browser tests (pytest -m browser), from the system's packages.
# Returns at once when /usr/bin/chromium is there. Installs it with apt-get when run as root on a
# Debian/Ubuntu system (as CI does); elsewhere it says the one command to run and exits 0, and the
# browser tests skip with that reason. Playwright drives this browser: `playwright install` is not used.
set -euo pipefail
BROWSER=${LIQUID_CHROMIUM:-/usr/bin/chromium}
if [ -x "$BROWSER" ]; then
  echo "chromium present: $BROWSER"
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends chromium || { apt-get update && apt-get install -y --no-install-recommends chromium; }
  echo "chromium installed: $(command -v chromium)"
else
  echo "chromium not found at $BROWSER and not root with apt-get: install it with 'sudo apt-get install -y chromium'" \
       "(or set LIQUID_CHROMIUM to a Chromium binary); the browser tests skip until then" >&2
fi
