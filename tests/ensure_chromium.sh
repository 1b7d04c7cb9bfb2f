#!/usr/bin/env bash
# The browser tests drive Debian's headless Chromium: install it where it is missing
# (as root, from Debian's packages; nothing else is fetched at run time).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -n "${SKYLEDGER_CHROMIUM:-}" ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "the browser tests need Chromium: run 'apt-get install chromium' as root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
command -v chromium >/dev/null
