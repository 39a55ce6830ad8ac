// The per-message cost of the event encoder alone (dnstap protobuf → DNS parse → JSON event, and
// the resolution map's address facts), on one thread, with no sockets or scheduling: the part of
// the forwarder's CPU that the code, not the machine, decides. For scripts/bench.sh.
//
//   encoder-bench CAPTURE.fstrm [--rounds N] [--no-map] [--transactions] [--pending]   (a Frame Streams
//   file, e.g. fstrm_capture's)
//
// --no-map: without the resolution map's work (what `-resolution-map-size 0` saves).
// --transactions: with `-transactions`' join (the default table of 100,000 and 5 s; nothing expires
// within a round: the queries left over are the capture's own unanswered ones).
// --pending: instead, the memory of `-transactions`' table: every query of the capture held (none
// answered), the process's RSS before and after, in bytes a pending query.
import DnstapForwarder
import Foundation
import NIOCore

let arguments = CommandLine.arguments
guard arguments.count >= 2, let data = FileManager.default.contents(atPath: arguments[1]) else {
    FileHandle.standardError.write(Data("usage: encoder-bench CAPTURE.fstrm [--rounds N]\n".utf8))
    exit(2)
}
let rounds = arguments.firstIndex(of: "--rounds").flatMap { Int(arguments[$0 + 1]) } ?? 5
let withMap = !arguments.contains("--no-map")
let withTransactions = arguments.contains("--transactions")

// The data frames of the file (a zero length starts a control frame, skipped).
var frames: [ByteBuffer] = []
data.withUnsafeBytes { bytes in
    var offset = 0
    func u32(_ at: Int) -> Int { Int(bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self).bigEndian) }
    while offset + 4 <= bytes.count {
        let length = u32(offset)
        if length == 0 {
            guard offset + 8 <= bytes.count else { break }
            offset += 8 + u32(offset + 4)
            continue
        }
        guard offset + 4 + length <= bytes.count else { break }
        frames.append(ByteBuffer(bytes: UnsafeRawBufferPointer(rebasing: bytes[(offset + 4)..<(offset + 4 + length)])))
        offset += 4 + length
    }
}
guard !frames.isEmpty else {
    FileHandle.standardError.write(Data("no data frames in \(arguments[1])\n".utf8))
    exit(1)
}

if arguments.contains("--pending") {
    measurePendingMemory(frames)
    exit(0)
}

// As a connection's encoding lane does it: 128 frames a read, events taken after each read.
var settings = ResolutionMapSettings()
settings.ttlFloor = .seconds(365 * 86_400)  // the capture's answers stay mappable whatever its age
settings.ttlCeiling = .seconds(365 * 86_400)
let map = ResolutionMap(settings: settings)
var encoder = DnstapEventEncoder(collectResolutions: withMap, recentResponses: map.recentResponses)
if withTransactions {
    var joining = TransactionSettings()
    joining.enabled = true
    encoder.transactions = TransactionTable(settings: joining)
}
var eventsOut = 0
var bestNanos = UInt64.max
var bytesOut = 0
var observations = 0
for _ in 0..<rounds {
    let start = DispatchTime.now().uptimeNanoseconds
    bytesOut = 0
    eventsOut = 0
    observations = 0
    var index = 0
    while index < frames.count {
        let end = min(index + 128, frames.count)
        for frame in frames[index..<end] {
            try? encoder.append(frame: frame, receivedAtMicros: 1_800_000_000_000_000)
        }
        if withMap {
            let taken = encoder.takeResolutions().observations
            observations += taken.count
            map.record(taken)
        }
        for event in encoder.takeEvents() {
            bytesOut += event.json.readableBytes + 1
            eventsOut += 1
        }
        index = end
    }
    bestNanos = min(bestNanos, DispatchTime.now().uptimeNanoseconds - start)
}
let perMessage = Double(bestNanos) / Double(frames.count)
print(String(
    format: "encoder%@%@: %d messages, best of %d rounds: %.0f ns a message (%.0f messages/s on one core), %d events, %.0f bytes of JSON a message, map %d entries (%d observations recorded a round)",
    withMap ? "" : " (map off)", withTransactions ? " (-transactions)" : "", frames.count, rounds, perMessage, 1e9 / perMessage,
    eventsOut, Double(bytesOut) / Double(frames.count), map.statistics.entries, observations))

/// The dnstap Message.type of a frame (0 if none): field 14 (message), in it field 1 (type).
func messageType(_ frame: ByteBuffer) -> UInt64 {
    frame.withUnsafeReadableBytes { bytes -> UInt64 in
        func varint(_ at: inout Int, _ end: Int) -> UInt64? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while at < end, shift < 64 {
                let byte = bytes[at]
                at += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte < 0x80 { return value }
                shift += 7
            }
            return nil
        }
        func field(_ wanted: UInt64, from start: Int, to end: Int) -> (Int, Int)? {
            var at = start
            while at < end, let tag = varint(&at, end) {
                switch tag & 7 {
                case 0: guard let value = varint(&at, end) else { return nil }; if tag >> 3 == wanted { return (Int(value), -1) }
                case 2:
                    guard let length = varint(&at, end) else { return nil }
                    if tag >> 3 == wanted { return (at, at + Int(length)) }
                    at += Int(length)
                case 1: at += 8
                case 5: at += 4
                default: return nil
                }
            }
            return nil
        }
        guard let (start, end) = field(14, from: 0, to: bytes.count), end >= 0, let (type, _) = field(1, from: start, to: end) else { return 0 }
        return UInt64(type)
    }
}

func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
          let pages = text.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

func measurePendingMemory(_ frames: [ByteBuffer]) {
    let queries = frames.filter { messageType($0) % 2 == 1 }
    var settings = TransactionSettings()
    settings.enabled = true
    settings.timeout = .seconds(3600)
    settings.tableSize = queries.count
    let table = TransactionTable(settings: settings)
    var encoder = DnstapEventEncoder()
    encoder.transactions = table
    let before = residentBytes()
    var index = 0
    var written = 0
    while index < queries.count {
        let end = min(index + 128, queries.count)
        for frame in queries[index..<end] { try? encoder.append(frame: frame, receivedAtMicros: 1_800_000_000_000_000) }
        written += encoder.takeEvents().count
        index = end
    }
    let after = residentBytes()
    let pending = table.pending
    print(String(
        format: "transactions: %d queries pending (%d written: retransmissions), RSS +%.1f MiB, %.0f bytes a pending query",
        pending, written, Double(after - before) / 1_048_576, Double(after - before) / Double(max(pending, 1))))
}
