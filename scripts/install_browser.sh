#!/usr/bin/env bash
# Install Debian's chromium and its matching chromedriver for the headless browser test of
# `farsight play` (tests/test_play.py). A no-op when /usr/bin/chromium is already there.
# Needs root (apt-get); Playwright's/selenium-manager's own browser downloads are not used.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "==> installing chromium and chromium-driver (apt)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver
