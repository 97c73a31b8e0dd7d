#!/usr/bin/env bash
# podman kube play: the rendered chart's pods run here (tests/pods). As root, idempotent, fast when done.
#   1. apt-get install podman catatonit slirp4netns       (only if a tool is missing)
#   2. containers.conf: default_ulimits within this sandbox's limits (only if not set already)
# Without (2) every container fails with "error setting rlimit type 6/7: operation not permitted"
# (podman's defaults exceed what this sandbox allows). See ../shared/ENVIRONMENT.md.
set -euo pipefail

missing=()
for tool in podman:podman catatonit:catatonit slirp4netns:slirp4netns; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || [ -x "/usr/libexec/podman/${tool%%:*}" ] || [ -x "/usr/bin/${tool%%:*}" ] \
    || missing+=("${tool#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  . "$(dirname "$0")/apt.sh"
  apt_install "${missing[@]}"
fi

CONF="${PACKAGER_CONTAINERS_CONF:-/etc/containers/containers.conf}"
LINE='default_ulimits = ["nofile=16384:16384", "nproc=32768:32768"]'
mkdir -p "$(dirname "$CONF")"
if [ ! -e "$CONF" ]; then
  printf '[containers]\n%s\n' "$LINE" >"$CONF"
elif ! grep -q '^[[:space:]]*default_ulimits' "$CONF"; then
  # keep every other setting: add the line to the existing [containers] table, or add the table
  if grep -q '^[[:space:]]*\[containers\]' "$CONF"; then
    sed -i "0,/^[[:space:]]*\[containers\]/s//[containers]\n$LINE/" "$CONF"
  else
    printf '\n[containers]\n%s\n' "$LINE" >>"$CONF"
  fi
fi
echo "podman: $(podman --version) ($CONF sets default_ulimits)"
