// The per-message cost of the event encoder alone (dnstap protobuf → DNS parse → JSON event, and
// the resolution map's address facts), on one thread, with no sockets or scheduling: the part of
// the forwarder's CPU that the code, not the machine, decides. For scripts/bench.sh.
//
//   encoder-bench CAPTURE.fstrm [--rounds N] [--no-map]   (a Frame Streams file, e.g. fstrm_capture's)
//
// --no-map: without the resolution map's work (what `-resolution-map-size 0` saves).
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

// As a connection's encoding lane does it: 128 frames a read, events taken after each read.
var settings = ResolutionMapSettings()
settings.ttlFloor = .seconds(365 * 86_400)  // the capture's answers stay mappable whatever its age
settings.ttlCeiling = .seconds(365 * 86_400)
let map = ResolutionMap(settings: settings)
var encoder = DnstapEventEncoder(collectResolutions: withMap, recentResponses: map.recentResponses)
var bestNanos = UInt64.max
var bytesOut = 0
var observations = 0
for _ in 0..<rounds {
    let start = DispatchTime.now().uptimeNanoseconds
    bytesOut = 0
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
        for event in encoder.takeEvents() { bytesOut += event.json.readableBytes + 1 }
        index = end
    }
    bestNanos = min(bestNanos, DispatchTime.now().uptimeNanoseconds - start)
}
let perMessage = Double(bestNanos) / Double(frames.count)
print(String(
    format: "encoder%@: %d messages, best of %d rounds: %.0f ns a message (%.0f messages/s on one core), %.0f bytes of JSON a message, map %d entries (%d observations recorded a round)",
    withMap ? "" : " (map off)", frames.count, rounds, perMessage, 1e9 / perMessage, Double(bytesOut) / Double(frames.count),
    map.statistics.entries, observations))
