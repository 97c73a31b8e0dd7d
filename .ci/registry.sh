#!/usr/bin/env bash
# Start a throwaway OCI registry on 127.0.0.1:5000 (Debian's docker-registry).
# Idempotent: returns at once when something already answers /v2/ there.
# Storage lives in a temp dir, so every CI run starts empty.
set -euo pipefail
. "$(dirname "$0")/apt.sh"

ADDR="${PACKAGER_REGISTRY_ADDR:-127.0.0.1:5000}"
STATE="${PACKAGER_REGISTRY_STATE:-${TMPDIR:-/tmp}/packager-registry}"

answers() { curl -fsS -o /dev/null "http://${ADDR}/v2/" 2>/dev/null; }

if answers; then
  echo "registry: already answering on ${ADDR}"
  exit 0
fi

if ! command -v docker-registry >/dev/null 2>&1; then
  apt_install docker-registry curl
fi

mkdir -p "${STATE}/storage"
cat >"${STATE}/config.yml" <<CFG
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: ${STATE}/storage
  delete:
    enabled: true
http:
  addr: ${ADDR}
CFG

# setsid: the registry outlives this script and the shell that ran it.
setsid docker-registry serve "${STATE}/config.yml" >"${STATE}/registry.log" 2>&1 < /dev/null &
echo $! >"${STATE}/registry.pid"

for _ in $(seq 1 100); do
  if answers; then
    echo "registry: serving on ${ADDR} (pid $(cat "${STATE}/registry.pid"), storage ${STATE}/storage)"
    exit 0
  fi
  sleep 0.2
done
echo "registry: did not answer on ${ADDR}; log follows" >&2
cat "${STATE}/registry.log" >&2 || true
exit 1
