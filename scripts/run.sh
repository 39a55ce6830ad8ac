#!/usr/bin/env bash
# The run command: builds the release binary, installing first the Debian packages the build needs
# when they are missing (zlib's and libprotobuf-c's headers; apt-get, as root or with sudo), then
# runs it with the flags given:   scripts/run.sh [FLAGS...]
# The build's output goes to stderr, so stdout carries only events.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for package in zlib1g-dev libprotobuf-c-dev; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
  echo "installing the build's packages: ${missing[*]}" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
swift build -c release --product dnstap-forwarder >&2
exec "$(swift build -c release --show-bin-path)/dnstap-forwarder" "$@"
