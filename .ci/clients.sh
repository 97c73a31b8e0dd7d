#!/usr/bin/env bash
# Placeholder: filled in by the issue that needs it.
set -euo pipefail
