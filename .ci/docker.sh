#!/usr/bin/env bash
# Make a real Docker engine and the local base image available (as root).
# Idempotent: every step checks first and skips what is already done.
#   1. apt-get install docker.io debootstrap   (only if missing)
#   2. start dockerd                           (only if the socket does not answer)
#   3. debootstrap + docker import the base    (only if the image is missing)
# No registry can be reached on these machines, so the base image is made here.
set -euo pipefail
. "$(dirname "$0")/apt.sh"

SOCK="${PACKAGER_DOCKER_SOCK:-/var/run/docker.sock}"
BASE="${PACKAGER_BASE_IMAGE:-packager-base:bookworm}"
STATE="${PACKAGER_DOCKER_STATE:-${TMPDIR:-/tmp}/packager-docker}"
# Debian's CLI (20.10) does BuildKit without a buildx plugin; a newer client
# elsewhere on PATH may not, so this script and the build driver use this one.
DOCKER=/usr/bin/docker

mkdir -p "$STATE"

answers() { [ -S "$SOCK" ] && "$DOCKER" -H "unix://$SOCK" version >/dev/null 2>&1; }

if [ ! -x /usr/sbin/dockerd ] || [ ! -x "$DOCKER" ] || ! command -v debootstrap >/dev/null 2>&1; then
  apt_install docker.io debootstrap
fi

if answers; then
  echo "docker: engine already answering on $SOCK"
else
  # No bridge, no iptables: containers use --network host, builds --network none.
  # setsid: the engine outlives this script and the shell that ran it.
  setsid /usr/sbin/dockerd --bridge=none --iptables=false --ip-masq=false \
    --host "unix://$SOCK" >"$STATE/dockerd.log" 2>&1 </dev/null &
  echo $! >"$STATE/dockerd.pid"
  for _ in $(seq 1 150); do
    answers && break
    sleep 0.2
  done
  if ! answers; then
    echo "docker: engine did not answer on $SOCK; log follows" >&2
    tail -50 "$STATE/dockerd.log" >&2 || true
    exit 1
  fi
  echo "docker: engine started (pid $(cat "$STATE/dockerd.pid"), log $STATE/dockerd.log)"
fi

# Every image the tests build leaves BuildKit cache behind (about 1 GB a distinct deps layer); on a
# machine that runs CI again and again it filled the disk. Keep the recent part, which rebuilds use.
"$DOCKER" -H "unix://$SOCK" builder prune -f --keep-storage "${PACKAGER_BUILD_CACHE_KEEP:-16GB}" >/dev/null 2>&1 || true

if "$DOCKER" -H "unix://$SOCK" image inspect "$BASE" >/dev/null 2>&1; then
  echo "docker: base image $BASE already present"
else
  rootfs="$(mktemp -d "$STATE/rootfs.XXXXXX")"
  trap 'rm -rf "$rootfs"' EXIT
  echo "docker: debootstrap bookworm minbase into $rootfs (about 40 s)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" >"$STATE/debootstrap.log" 2>&1 \
    || { echo "docker: debootstrap failed; log follows" >&2; tail -30 "$STATE/debootstrap.log" >&2; exit 1; }
  # apt caches make the base larger for nothing.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | "$DOCKER" -H "unix://$SOCK" import \
    -c 'ENV LANG=C.UTF-8' -c 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
  echo "docker: imported base image $BASE"
fi
