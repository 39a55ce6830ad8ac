#!/usr/bin/env bash
# Regenerates Sources/DnstapForwarder/Decoding/Generated/dnstap.pb.swift from proto/dnstap.proto.
#
# Needs Debian's `protoc` (apt-get install protobuf-compiler) and swift-protobuf's
# `protoc-gen-swift` at the same version as Package.swift's swift-protobuf. Building the plugin
# takes about ten minutes on 2 cores, so this is run by hand and its output committed; CI never
# runs it. If PROTOC_GEN_SWIFT is unset, the plugin is built from the swift-protobuf checkout
# that `swift package resolve` placed under .build/checkouts.
set -euo pipefail
cd "$(dirname "$0")/.."
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
