# Sourced by scripts/bench/make-capture.sh and scripts/bench/live-rate.sh: the benchmark's resolver.
#
# bench_workdir NAME: makes a temporary directory (sets work) that is removed on exit, after killing
# what is still running of unbound_pid and receiver_pid (the receiver: whatever reads the dnstap).
bench_workdir() {
  work=$(mktemp -d "/tmp/dtf-$1.XXXXXX")
  unbound_pid=; receiver_pid=
  trap bench_cleanup EXIT
}

bench_cleanup() {
  [ -n "$unbound_pid" ] && kill "$unbound_pid" 2>/dev/null
  [ -n "$receiver_pid" ] && kill "$receiver_pid" 2>/dev/null
  rm -rf "$work"
}

# bench_unbound_setup DIR: writes into DIR the zone bench.test (2,000 hosts, each with an A, an AAAA
# and two-level CNAME chains to them: cdnN -> wwwN -> hostN), dnsperf's query file (8,001 queries:
# hostN A, hostN AAAA, wwwN A, cdnN AAAA, and one NXDOMAIN) and an Unbound configuration
# (config/unbound-loopback.conf.template) that answers it on 127.0.0.1 and sends its dnstap to
# DIR/tap.sock; sets bench_port to the UDP port it answers on.
bench_unbound_setup() {
  local dir=$1 template
  template="$(dirname "${BASH_SOURCE[0]}")/../../config/unbound-loopback.conf.template"
  bench_port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  awk 'BEGIN {
    print "$TTL 300"; print "@ IN SOA ns.bench.test. hostmaster.bench.test. 1 3600 600 86400 300"
    print "@ IN NS ns"; print "ns IN A 127.0.0.1"
    for (i = 0; i < 2000; i++) { a = int(i / 250); b = i % 250 + 1
      printf "host%d IN A 10.99.%d.%d\nhost%d IN AAAA fd00:99::%d:%d\n", i, a, b, i, a, b
      printf "www%d IN CNAME host%d\ncdn%d IN CNAME www%d\n", i, i, i, i } }' > "$dir/bench.test.zone"
  awk 'BEGIN { for (i = 0; i < 2000; i++) printf "host%d.bench.test A\nhost%d.bench.test AAAA\nwww%d.bench.test A\ncdn%d.bench.test AAAA\n", i, i, i, i
    print "nx.bench.test A" }' > "$dir/queries.txt"
  sed -e "s|{{PORT}}|$bench_port|g" -e "s|{{DIRECTORY}}|$dir|g" -e "s|{{ZONE}}|bench.test|g" \
      -e "s|{{ZONEFILE}}|$dir/bench.test.zone|g" -e "s|{{SOCKET}}|$dir/tap.sock|g" -e "s|{{IDENTITY}}|bench-unbound|g" \
      "$template" > "$dir/unbound.conf"
}

# bench_unbound_start DIR: starts Unbound with DIR/unbound.conf (sets unbound_pid) and waits until it answers.
bench_unbound_start() {
  unbound -d -c "$1/unbound.conf" 2>"$1/unbound.log" &
  unbound_pid=$!
  for _ in $(seq 100); do dig +short +tries=1 +time=1 @127.0.0.1 -p "$bench_port" host0.bench.test A >/dev/null 2>&1 && return; sleep 0.1; done
  echo "unbound did not answer on port $bench_port: $1/unbound.log" >&2; return 1
}
