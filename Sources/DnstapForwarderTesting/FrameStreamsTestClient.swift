import DnstapForwarder
import NIOCore
import NIOPosix
import NIOSSL

/// A scriptable Frame Streams sender for tests: it can follow the protocol or break it on purpose.
/// Unchecked Sendable: a test hands it between its own tasks but uses it from one at a time.
public final class FrameStreamsTestClient: @unchecked Sendable {
    public let channel: any Channel
    private var inbound: AsyncStream<ByteBuffer>.AsyncIterator
    private var received: ByteBuffer

    private init(channel: any Channel, inbound: AsyncStream<ByteBuffer>) {
        self.channel = channel
        self.inbound = inbound.makeAsyncIterator()
        self.received = channel.allocator.buffer(capacity: 256)
    }

    /// - Parameter tls: speak TLS with this context (and this server name, for SNI and verification).
    public static func connect(
        to address: SocketAddress, tls: (context: NIOSSLContext, serverHostname: String?)? = nil,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> FrameStreamsTestClient {
        let (stream, continuation) = AsyncStream.makeStream(of: ByteBuffer.self)
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverHostname))
                    }
                    try channel.pipeline.syncOperations.addHandler(Collector(continuation: continuation))
                }
            }
            .connect(to: address).get()
        return FrameStreamsTestClient(channel: channel, inbound: stream)
    }

    public static func connect(unixPath: String) async throws -> FrameStreamsTestClient {
        try await connect(to: SocketAddress(unixDomainSocketPath: unixPath))
    }

    // MARK: - Sending

    public func send(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(channel.allocator.buffer(bytes: bytes))
    }

    public func send(_ control: ControlFrame) async throws {
        try await channel.writeAndFlush(control.encoded(allocator: channel.allocator))
    }

    public func sendData(_ payload: [UInt8]) async throws {
        try await send(FrameStreamsFile.dataFrame(payload))
    }

    public func sendData(_ payloads: [[UInt8]]) async throws {
        try await send(payloads.flatMap(FrameStreamsFile.dataFrame))
    }

    public static let ready = ControlFrame(type: .ready, contentTypes: [FrameStreams.dnstapContentType])
    public static let start = ControlFrame(type: .start, contentTypes: [FrameStreams.dnstapContentType])
    public static let stop = ControlFrame(type: .stop)

    /// READY, expect ACCEPT, START. Returns the ACCEPT frame (nil if the receiver closed instead).
    @discardableResult
    public func handshake() async throws -> ControlFrame? {
        do {
            try await send(Self.ready)
        } catch {
            return nil  // the receiver already closed: a rejection
        }
        guard let accept = try await readControlFrame() else { return nil }
        try await send(Self.start)
        return accept
    }

    /// STOP, then wait for FINISH (nil if the receiver closed instead).
    public func stop() async throws -> ControlFrame? {
        try await send(Self.stop)
        return try await readControlFrame()
    }

    // MARK: - Receiving

    /// The next control frame from the receiver; nil when the connection closed first.
    public func readControlFrame() async throws -> ControlFrame? {
        while true {
            if let length = received.getInteger(at: received.readerIndex + 4, as: UInt32.self),
                received.readableBytes >= 8 + Int(length)
            {
                received.moveReaderIndex(forwardBy: 8)
                return try ControlFrame(payload: received.readSlice(length: Int(length))!)
            }
            guard var more = await inbound.next() else { return nil }
            received.writeBuffer(&more)
        }
    }

    /// Waits until the receiver closes the connection; returns the bytes it sent meanwhile.
    @discardableResult
    public func waitForClose() async -> Int {
        var count = received.readableBytes
        while let more = await inbound.next() { count += more.readableBytes }
        return count
    }

    /// The server's certificate (a TLS connection, once its handshake is done).
    public func peerCertificate() async throws -> NIOSSLCertificate? {
        try await channel.nioSSL_peerCertificate().get()
    }

    public func close() async {
        try? await channel.close()
    }

    private final class Collector: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let continuation: AsyncStream<ByteBuffer>.Continuation

        init(continuation: AsyncStream<ByteBuffer>.Continuation) { self.continuation = continuation }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            continuation.yield(unwrapInboundIn(data))
        }

        func channelInactive(context: ChannelHandlerContext) {
            continuation.finish()
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}
