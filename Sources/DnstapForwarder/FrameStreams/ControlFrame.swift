import NIOCore

/// Frame Streams constants (fstrm `control.h`; PROTOCOLS.md §1.1).
public enum FrameStreams {
    /// The only content type this service speaks.
    public static let dnstapContentType: [UInt8] = Array("protobuf:dnstap.Dnstap".utf8)
    /// Largest control frame payload (`FSTRM_CONTROL_FRAME_LENGTH_MAX`).
    public static let controlFrameMaxLength = 512
    /// Largest content-type field (`FSTRM_CONTROL_FIELD_CONTENT_TYPE_LENGTH_MAX`).
    public static let contentTypeMaxLength = 256
    /// The only field type defined.
    static let contentTypeFieldType: UInt32 = 1
}

/// The control frame types. Unknown types are kept as their raw value.
public enum ControlFrameType: Equatable, Sendable, CustomStringConvertible {
    case accept, start, stop, ready, finish
    case unknown(UInt32)

    public init(rawValue: UInt32) {
        switch rawValue {
        case 1: self = .accept
        case 2: self = .start
        case 3: self = .stop
        case 4: self = .ready
        case 5: self = .finish
        default: self = .unknown(rawValue)
        }
    }

    public var rawValue: UInt32 {
        switch self {
        case .accept: return 1
        case .start: return 2
        case .stop: return 3
        case .ready: return 4
        case .finish: return 5
        case .unknown(let value): return value
        }
    }

    public var description: String {
        switch self {
        case .accept: return "ACCEPT"
        case .start: return "START"
        case .stop: return "STOP"
        case .ready: return "READY"
        case .finish: return "FINISH"
        case .unknown(let value): return "UNKNOWN(\(value))"
        }
    }
}

/// A decoded control frame: its type and its CONTENT_TYPE fields.
public struct ControlFrame: Equatable, Sendable {
    public var type: ControlFrameType
    public var contentTypes: [[UInt8]]

    public init(type: ControlFrameType, contentTypes: [[UInt8]] = []) {
        self.type = type
        self.contentTypes = contentTypes
    }

    /// Parses a control payload (the bytes after the escape and the length word).
    public init(payload: ByteBuffer) throws(FrameStreamsError) {
        var payload = payload
        guard let rawType = payload.readInteger(as: UInt32.self) else {
            throw .malformedControlFrame("control frame shorter than its 4-byte type")
        }
        self.type = ControlFrameType(rawValue: rawType)
        self.contentTypes = []
        while payload.readableBytes > 0 {
            guard let fieldType = payload.readInteger(as: UInt32.self),
                let fieldLength = payload.readInteger(as: UInt32.self)
            else {
                throw .malformedControlFrame("truncated field header in \(type)")
            }
            guard fieldType == FrameStreams.contentTypeFieldType else {
                throw .malformedControlFrame("unknown field type \(fieldType) in \(type)")
            }
            guard fieldLength <= FrameStreams.contentTypeMaxLength, let bytes = payload.readBytes(length: Int(fieldLength))
            else {
                throw .malformedControlFrame("content type of \(fieldLength) bytes in \(type) (limit 256, or past the frame)")
            }
            contentTypes.append(bytes)
        }
    }

    /// Whether this frame's content types allow dnstap: none listed, or dnstap among them.
    public var allowsDnstap: Bool {
        contentTypes.isEmpty || contentTypes.contains(FrameStreams.dnstapContentType)
    }

    /// Writes the frame with its escape and length word.
    public func encode(into buffer: inout ByteBuffer) {
        let payloadLength = 4 + contentTypes.reduce(0) { $0 + 8 + $1.count }
        buffer.writeInteger(UInt32(0))
        buffer.writeInteger(UInt32(payloadLength))
        buffer.writeInteger(type.rawValue)
        for contentType in contentTypes {
            buffer.writeInteger(FrameStreams.contentTypeFieldType)
            buffer.writeInteger(UInt32(contentType.count))
            buffer.writeBytes(contentType)
        }
    }

    public func encoded(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 12 + contentTypes.reduce(0) { $0 + 8 + $1.count })
        encode(into: &buffer)
        return buffer
    }

    public static let accept = ControlFrame(type: .accept, contentTypes: [FrameStreams.dnstapContentType])
    public static let finish = ControlFrame(type: .finish)
}

public enum FrameStreamsError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformedControlFrame(String)
    case controlFrameLength(Int)
    case frameLengthInsane(Int)
    case truncatedFrame(bufferedBytes: Int)

    public var description: String {
        switch self {
        case .malformedControlFrame(let why): return "malformed control frame: \(why)"
        case .controlFrameLength(let length):
            return "control frame length \(length) outside 4...\(FrameStreams.controlFrameMaxLength)"
        case .frameLengthInsane(let length):
            return "data frame length \(length) is past any sane size: the stream is not Frame Streams or is out of sync"
        case .truncatedFrame(let bytes): return "stream ended in the middle of a frame (\(bytes) bytes buffered)"
        }
    }

    /// A short, fixed label for counters and close reasons.
    public var kind: String {
        switch self {
        case .malformedControlFrame: return "malformed_control"
        case .controlFrameLength: return "control_length"
        case .frameLengthInsane: return "frame_length"
        case .truncatedFrame: return "truncated_frame"
        }
    }
}
