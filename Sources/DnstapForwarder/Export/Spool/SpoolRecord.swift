import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// The on-disk form of one spooled batch:
/// `u32 payloadLength | u64 checksum (FNV-1a of seq + payload) | u64 seq | payload`, where the
/// payload is `u32 count` then, per event, `i64 timeMicros | u32 length | JSON bytes`.
/// A record cut short by a crash fails the length or checksum test and ends the segment there.
enum SpoolRecord {
    static let headerSize = 4 + 8 + 8

    /// The size of the record `encode` makes of `events`.
    static func size(of events: [ForwardedEvent]) -> Int {
        var size = headerSize + 4
        for event in events { size += 12 + event.json.readableBytes }
        return size
    }

    /// Checks the record at `offset` of a file without keeping it: its header, and its payload
    /// against the checksum, read in chunks. nil if it is torn or corrupt (the segment ends there).
    static func check(fd: CInt, at offset: Int, fileSize: Int) -> (seq: UInt64, length: Int, count: Int)? {
        var header = [UInt8](repeating: 0, count: headerSize + 4)
        guard offset + header.count <= fileSize,
            header.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, $0.count, off_t(offset)) }) == header.count
        else { return nil }
        let word = { (at: Int, bytes: Int) -> UInt64 in header[at..<(at + bytes)].reduce(0) { $0 << 8 | UInt64($1) } }
        let length = Int(word(0, 4))
        let sum = word(4, 8)
        let seq = word(12, 8)
        guard length >= 4, offset + headerSize + length <= fileSize else { return nil }
        var hash = checksumStart(seq: seq)
        var chunk = [UInt8](repeating: 0, count: min(length, 1 << 20))
        var done = 0
        while done < length {
            let want = min(chunk.count, length - done)
            let got = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(offset + headerSize + done)) }
            guard got > 0 else { return nil }
            for byte in chunk[0..<got] { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
            done += got
        }
        guard hash == sum else { return nil }
        return (seq, headerSize + length, Int(word(20, 4)))
    }

    static func encode(seq: UInt64, events: [ForwardedEvent]) -> ByteBuffer {
        var payload = ByteBuffer()
        var size = 4
        for event in events { size += 12 + event.json.readableBytes }
        payload.reserveCapacity(size)
        payload.writeInteger(UInt32(events.count))
        for event in events {
            payload.writeInteger(event.timeMicros)
            payload.writeInteger(UInt32(event.json.readableBytes))
            payload.writeImmutableBuffer(event.json)
        }
        var record = ByteBuffer()
        record.reserveCapacity(headerSize + payload.readableBytes)
        record.writeInteger(UInt32(payload.readableBytes))
        record.writeInteger(checksum(seq: seq, payload: payload))
        record.writeInteger(seq)
        record.writeImmutableBuffer(payload)
        return record
    }

    /// Reads the record at the buffer's reader index; nil (and the index unmoved) if it is torn.
    static func decode(_ buffer: inout ByteBuffer) -> (seq: UInt64, events: [ForwardedEvent])? {
        let start = buffer.readerIndex
        guard let length = buffer.getInteger(at: start, as: UInt32.self),
            let sum = buffer.getInteger(at: start + 4, as: UInt64.self),
            let seq = buffer.getInteger(at: start + 12, as: UInt64.self),
            var payload = buffer.getSlice(at: start + headerSize, length: Int(length)),
            checksum(seq: seq, payload: payload) == sum,
            let count = payload.readInteger(as: UInt32.self)
        else { return nil }
        var events: [ForwardedEvent] = []
        events.reserveCapacity(Int(min(count, 1_000_000)))
        for _ in 0..<count {
            guard let time = payload.readInteger(as: Int64.self), let size = payload.readInteger(as: UInt32.self),
                let json = payload.readSlice(length: Int(size))
            else { return nil }
            events.append(ForwardedEvent(json: json, timeMicros: time))
        }
        buffer.moveReaderIndex(forwardBy: headerSize + Int(length))
        return (seq, events)
    }

    /// FNV-1a over the sequence number's bytes (low first), the start of a record's checksum.
    static func checksumStart(seq: UInt64) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for shift in stride(from: 0, to: 64, by: 8) {
            let byte: UInt64 = (seq >> UInt64(shift)) & 0xFF
            hash = (hash ^ byte) &* 0x100_0000_01b3
        }
        return hash
    }

    static func checksum(seq: UInt64, payload: ByteBuffer) -> UInt64 {
        var hash = checksumStart(seq: seq)
        payload.withUnsafeReadableBytes { bytes in
            for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        }
        return hash
    }
}
