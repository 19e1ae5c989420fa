#!/usr/bin/env bash
# The browser the tests drive: Chromium and its WebDriver, from the system's package manager
# (Debian/Ubuntu: chromium and chromium-driver), installed only when missing. Part of the
# README's test line; nothing else here needs a browser.
#   bash scripts/install_browser.sh
set -euo pipefail
if command -v chromedriver >/dev/null && { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "the browser tests need Chromium and chromedriver on PATH, and this system has no apt-get:" \
       "install them with its package manager (macOS: brew install --cask chromium chromedriver)" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing Debian's chromium and chromium-driver (the browser tests' browser)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
