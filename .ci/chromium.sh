#!/usr/bin/env bash
# Headless Debian chromium for the plan-report test (tests/planner/test_plan_report.py), which opens the
# report offline, counts its rendered charts and takes a screenshot. Idempotent.
set -euo pipefail
. "$(dirname "$0")/apt.sh"
if command -v chromium >/dev/null 2>&1; then
  echo "chromium: $(chromium --version 2>/dev/null || echo present)"
  exit 0
fi
apt_install chromium
echo "chromium: $(chromium --version 2>/dev/null)"
