# Sourced by the .ci scripts: install Debian packages without starting their services.
# apt_install PKG...   (as root; waits for another script's dpkg lock instead of failing)
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  # policy-rc.d 101 keeps a package's own service from starting (dockerd, or a registry grabbing :5000);
  # the scripts start what they need themselves.
  local had_policy=0
  [ -e /usr/sbin/policy-rc.d ] && had_policy=1
  if [ "$had_policy" = 0 ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; fi
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >/dev/null
  if [ "$had_policy" = 0 ]; then rm -f /usr/sbin/policy-rc.d; fi
}
