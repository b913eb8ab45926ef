#!/usr/bin/env bash
# Make Debian's headless Chromium and ChromeDriver available for the browser tests.
set -u
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_browser: not root or no apt-get; cannot install chromium" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1
command -v chromium >/dev/null 2>&1
