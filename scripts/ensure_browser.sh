#!/usr/bin/env bash
# Make Debian's headless Chromium and ChromeDriver available for the browser tests
# (tests/test_browser.py drives /usr/bin/chromium with Playwright; nothing is downloaded by Playwright).
# Exit 0 when chromium is (now) on PATH, 1 with a reason on stderr otherwise. Log: /tmp/browser.log
set -u
have() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }
if have; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_browser: chromium is missing and cannot be installed here (needs root and apt-get);" \
       "install Debian's chromium + chromium-driver to run the browser tests" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "ensure_browser: installing chromium and chromium-driver with apt-get (log: /tmp/browser.log)" >&2
{ apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver; } >>/tmp/browser.log 2>&1
if have; then exit 0; fi
echo "ensure_browser: apt-get could not install chromium (see /tmp/browser.log)" >&2
exit 1
