#!/usr/bin/env bash
# Installs the real peers the tests and the benchmark drive (Debian 12), skipping what is there.
#   fstrm-bin: fstrm_replay / fstrm_capture (libfstrm, the Frame Streams reference)
#   unbound: a real resolver sending dnstap (and the authoritative upstream of the others)
#   knot-resolver, bind9, pdns-recursor, dnsdist: the other resolvers the tests drive
#   dnsutils: dig;  dnsperf: load for the benchmark
#   golang-github-dnstap-golang-dnstap-cli: golang-dnstap's `dnstap`, the benchmark's peer
#   time: /usr/bin/time for peak memory;  python3: scripts/test_connection_limits.sh
#   zlib1g-dev: zlib's headers, which the gzip of the HEC output (compress-nio) builds against
#   libprotobuf-c-dev: libprotobuf-c, the service's dnstap protobuf decoder (build and run)
#   openssl: makes the certificates of the TLS tests (HEC, the dnstap listener)
#   debootstrap: the minimal Debian root of scripts/test-container-runtime.sh
#   stunnel4: the TLS wrapper of the recipe for resolvers whose dnstap has no TLS (tested)
#   prometheus: a real Prometheus that scrapes the forwarder in a test, and promtool, which checks
#     and unit-tests config/prometheus/alerts.yml
# Package scripts are kept from starting daemons while installing (unbound would take port 53).
set -euo pipefail
pkgs=(fstrm-bin unbound knot-resolver bind9 pdns-recursor dnsdist dnsutils dnsperf golang-github-dnstap-golang-dnstap-cli time python3 procps zlib1g-dev libprotobuf-c-dev openssl debootstrap stunnel4 prometheus)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "test dependencies already installed"
  exit 0
fi
sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\n# temporary (dnstap-forwarder install-test-deps.sh): do not start daemons\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod 755 /usr/sbin/policy-rc.d
  created_policy=1
fi
trap '[ $created_policy = 1 ] && $sudo rm -f /usr/sbin/policy-rc.d' EXIT
echo "installing: ${missing[*]}"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
