#!/usr/bin/env bash
# Install headless Chromium (Debian/Ubuntu package) for the report's browser test
# (tests/test_report.py opens results/{dataset}/report.html in it). Idempotent; never fails the
# caller: without apt or root rights it says so, and that test is skipped with the same reason.
set -uo pipefail
for b in chromium chromium-browser google-chrome google-chrome-stable; do
  if command -v "$b" >/dev/null 2>&1; then
    echo "browser for the report test: $(command -v "$b")"
    exit 0
  fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: no apt-get here; install Chromium yourself (or set SLOTBENCH_CHROMIUM) to run the report's browser test"
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "note: installing Chromium needs root (apt-get install chromium); the report's browser test will be skipped"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
  echo "installed $(chromium --version 2>/dev/null)"
else
  echo "note: apt-get install chromium failed; the report's browser test will be skipped"
fi
exit 0
