// A minimal HEC-compatible receiver for scripts/bench.sh: answers every POST with success after
// decompressing it and counting its envelopes (one per line) and their bytes, and exits once it has
// `--expect N` events, printing how long they took and how many bytes they were (decompressed, and
// as sent). `--stall` accepts connections and never answers, to measure
// the forwarder's memory while HEC is stalled. Loopback only.
import CompressNIO
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

let arguments = CommandLine.arguments
func option(_ name: String) -> String? {
    arguments.firstIndex(of: name).flatMap { $0 + 1 < arguments.count ? arguments[$0 + 1] : nil }
}
let port = Int(option("--port") ?? "0") ?? 0
let expected = Int(option("--expect") ?? "0") ?? 0
let stall = arguments.contains("--stall")

final class Counter: Sendable {
    let state = Mutex<(events: Int, bytes: Int, wireBytes: Int, first: Date?, done: Bool)>((0, 0, 0, nil, false))
    let finished: EventLoopPromise<Void>
    init(_ promise: EventLoopPromise<Void>) { finished = promise }

    func add(_ count: Int, bytes: Int, wireBytes: Int) {
        let complete = state.withLock { state -> Bool in
            if state.first == nil { state.first = Date() }
            state.events += count
            state.bytes += bytes
            state.wireBytes += wireBytes
            guard expected > 0, state.events >= expected, !state.done else { return false }
            state.done = true
            return true
        }
        if complete { finished.succeed() }
    }
}

final class Handler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let counter: Counter
    var body = ByteBuffer()
    var gzip = false
    var version = HTTPVersion.http1_1

    init(counter: Counter) { self.counter = counter }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            body.clear()
            gzip = head.headers.first(name: "Content-Encoding") == "gzip"
            version = head.version
        case .body(var chunk):
            body.writeBuffer(&chunk)
        case .end:
            if stall { return }
            var payload = body
            if gzip, let plain = try? payload.decompress(with: .gzip()) { payload = plain }
            let lines = payload.withUnsafeReadableBytes { $0.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) } }
            counter.add(lines, bytes: payload.readableBytes, wireBytes: body.readableBytes)
            let text = #"{"text":"Success","code":0}"#
            let headers = HTTPHeaders([("Content-Type", "application/json"), ("Content-Length", "\(text.utf8.count)")])
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: .ok, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: text)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}

let group = MultiThreadedEventLoopGroup.singleton
let counter = Counter(group.next().makePromise())
let server = try ServerBootstrap(group: group)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelInitializer { channel in
        channel.pipeline.configureHTTPServerPipeline().flatMap { channel.pipeline.addHandler(Handler(counter: counter)) }
    }
    .bind(host: "127.0.0.1", port: port).wait()
FileHandle.standardOutput.write(Data("listening port=\(server.localAddress!.port!)\n".utf8))
try counter.finished.futureResult.wait()
let (events, bytes, wireBytes, first, _) = counter.state.withLock { $0 }
print(String(
    format: "events=%d bytes=%d wire_bytes=%d seconds_since_first=%.3f", events, bytes, wireBytes,
    Date().timeIntervalSince(first ?? Date())))
