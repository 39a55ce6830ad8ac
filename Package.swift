// swift-tools-version:6.0
import PackageDescription

// scripts/fuzz.sh builds with DNSTAP_FUZZ_BUILD=1: this package's own code (the code under test)
// gets libFuzzer's coverage and AddressSanitizer; the dependencies are built as usual, so libFuzzer
// tracks only the decoders' coverage and runs several times faster.
let fuzzing = Context.environment["DNSTAP_FUZZ_BUILD"] == "1"
let fuzzSettings: [SwiftSetting] = fuzzing ? [.unsafeFlags(["-sanitize=fuzzer,address"])] : []
// Release builds of the pipeline skip the runtime exclusivity checks (the compile-time ones stay):
// swift_beginAccess was about 9 % of the CPU per dnstap message, mostly in the generated protobuf
// code's storage accesses (scripts/bench.sh, README "Performance"). Debug builds and the sanitizer
// and fuzz builds keep them.
let pipelineSettings: [SwiftSetting] = fuzzSettings + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "dnstap-forwarder",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "dnstap-forwarder", targets: ["DnstapForwarderCLI"]),
        .library(name: "DnstapForwarder", targets: ["DnstapForwarder"]),
        .executable(name: "hec-bench-receiver", targets: ["HECBenchReceiver"]),
        .executable(name: "resolution-map-bench", targets: ["ResolutionMapBench"]),
        // libFuzzer's entry point, linked into a fuzzer by scripts/fuzz.sh (unused otherwise).
        .library(name: "DnstapFuzzEntry", type: .dynamic, targets: ["DnstapFuzzEntry"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // The whole pipeline: configuration, Frame Streams, listener, decoding, export, statistics.
        .target(
            name: "DnstapForwarder",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "CompressNIO", package: "compress-nio"),
            ],
            swiftSettings: pipelineSettings
        ),
        // Test doubles: a Frame Streams client, an in-memory sink, dnstap/DNS message builders.
        .target(
            name: "DnstapForwarderTesting",
            dependencies: [
                "DnstapForwarder",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        // The `dnstap-forwarder` binary: flags and env into a configuration, bootstrap, run.
        .executableTarget(
            name: "DnstapForwarderCLI",
            dependencies: [
                "DnstapForwarder",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // A fast HEC-compatible receiver for scripts/bench.sh (not part of the service).
        .executableTarget(
            name: "HECBenchReceiver",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "CompressNIO", package: "compress-nio"),
            ]
        ),
        // The fuzz targets: arbitrary bytes through each decoder, checking what must hold for any
        // input. Run by libFuzzer (scripts/fuzz.sh) and, over the committed corpus, by the unit tests.
        .target(
            name: "DnstapFuzzTargets",
            dependencies: [
                "DnstapForwarder",
                "DnstapForwarderTesting",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: fuzzSettings
        ),
        .target(name: "DnstapFuzzEntry", dependencies: ["DnstapFuzzTargets"], swiftSettings: fuzzSettings),
        // Memory per entry and recording rate of the resolution map, for scripts/bench.sh.
        .executableTarget(name: "ResolutionMapBench", dependencies: ["DnstapForwarder"]),
        .testTarget(
            name: "DnstapForwarderTests",
            dependencies: [
                "DnstapForwarder",
                "DnstapForwarderTesting",
                "DnstapFuzzTargets",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "DnstapForwarder",
                "DnstapForwarderTesting",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
