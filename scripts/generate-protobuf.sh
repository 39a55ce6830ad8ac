#!/usr/bin/env bash
# Regenerates the protobuf code from proto/dnstap.proto and proto/dnsmessage.proto (PowerDNS's
# protobuf logging); the output is committed.
#
#   scripts/generate-protobuf.sh [all|swift|c]      (default: all)
#
# c:     Sources/CDnstapProtobufC/{dnstap.pb-c.c,include/dnstap.pb-c.h}, the service's decoder
#        (libprotobuf-c), with Debian's `protoc-c` (apt-get install protobuf-c-compiler). It is made
#        from a copy of the schema with two wire-compatible changes, so that it decodes as leniently
#        as the protocol allows: `required` becomes `optional` (a message missing its type still
#        decodes, partially) and Policy's `string type` becomes `bytes type` (no UTF-8 check).
#        Likewise Sources/CDnstapProtobufC/{dnsmessage.pb-c.c,include/dnsmessage.pb-c.h}, with
#        every `string` of PowerDNS's schema read as `bytes` (names and policies are not trusted
#        to be UTF-8; the JSON writer escapes bytes).
# swift: Sources/DnstapForwarder/Decoding/Generated/dnstap.pb.swift (swift-protobuf: the test
#        doubles build dnstap messages with it; the fuzz target checks both decoders agree), with
#        Debian's `protoc` and swift-protobuf's `protoc-gen-swift` at the same version as
#        Package.swift's swift-protobuf. Building the plugin takes about ten minutes on 2 cores,
#        so this is run by hand; CI never runs it. If PROTOC_GEN_SWIFT is unset, the plugin is
#        built from the swift-protobuf checkout that `swift package resolve` placed under
#        .build/checkouts. PowerDNS's schema goes to Sources/DnstapForwarderTesting/Generated
#        (test doubles only: the service decodes it with libprotobuf-c).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}

if [ "$what" = all ] || [ "$what" = c ]; then
  out=Sources/CDnstapProtobufC
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  sed -e 's/^\([[:space:]]*\)required /\1optional /' \
      -e 's/^\([[:space:]]*\)optional string type = 1;/\1optional bytes type = 1;/' \
      proto/dnstap.proto >"$work/dnstap.proto"
  grep -q 'required ' "$work/dnstap.proto" && { echo "a required field is left" >&2; exit 1; }
  grep -q 'optional bytes type = 1;' "$work/dnstap.proto" || { echo "Policy.type was not changed to bytes" >&2; exit 1; }
  protoc-c --c_out="$work" --proto_path="$work" "$work/dnstap.proto"
  install -m 0644 "$work/dnstap.pb-c.c" "$out/dnstap.pb-c.c"
  install -m 0644 "$work/dnstap.pb-c.h" "$out/include/dnstap.pb-c.h"
  echo "wrote $out/dnstap.pb-c.c and $out/include/dnstap.pb-c.h ($(protoc-c --version | head -1))"
  sed -e 's/^\([[:space:]]*\)required /\1optional /' \
      -e 's/^\([[:space:]]*\)\(optional\|repeated\) string /\1\2 bytes /' \
      proto/dnsmessage.proto >"$work/dnsmessage.proto"
  grep -q 'required \|string ' "$work/dnsmessage.proto" && { echo "a required or string field is left" >&2; exit 1; }
  protoc-c --c_out="$work" --proto_path="$work" "$work/dnsmessage.proto"
  install -m 0644 "$work/dnsmessage.pb-c.c" "$out/dnsmessage.pb-c.c"
  install -m 0644 "$work/dnsmessage.pb-c.h" "$out/include/dnsmessage.pb-c.h"
  echo "wrote $out/dnsmessage.pb-c.c and $out/include/dnsmessage.pb-c.h"
fi

if [ "$what" = all ] || [ "$what" = swift ]; then
  out=Sources/DnstapForwarder/Decoding/Generated
  plugin=${PROTOC_GEN_SWIFT:-}
  if [ -z "$plugin" ]; then
    swift package resolve
    src=.build/checkouts/swift-protobuf
    [ -d "$src" ] || { echo "no swift-protobuf checkout at $src" >&2; exit 1; }
    (cd "$src" && swift build -c release --product protoc-gen-swift)
    plugin=$src/.build/release/protoc-gen-swift
  fi
  mkdir -p "$out"
  protoc --plugin=protoc-gen-swift="$plugin" \
         --swift_opt=Visibility=Public \
         --swift_out="$out" \
         --proto_path=proto proto/dnstap.proto
  echo "wrote $out/dnstap.pb.swift"
  testing=Sources/DnstapForwarderTesting/Generated
  mkdir -p "$testing"
  protoc --plugin=protoc-gen-swift="$plugin" \
         --swift_opt=Visibility=Public \
         --swift_out="$testing" \
         --proto_path=proto proto/dnsmessage.proto
  echo "wrote $testing/dnsmessage.pb.swift"
fi
