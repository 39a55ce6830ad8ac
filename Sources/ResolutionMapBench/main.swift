// Measures the resolution map's memory per entry and its recording rate, for scripts/bench.sh:
// fills a map with N addresses (realistic names; every third through a two-hop CNAME chain, every
// fifth address given a second name), then prints the resident memory it took per entry.
//
//   resolution-map-bench [--entries N]
import DnstapForwarder
import Foundation

let arguments = CommandLine.arguments
let entries = arguments.firstIndex(of: "--entries").flatMap { Int(arguments[$0 + 1]) } ?? 1_000_000

func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    return (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
}

var settings = ResolutionMapSettings()
settings.capacity = entries
let map = ResolutionMap(settings: settings)
let now = WallClock.nowMicros()

// Observations are built ahead, in batches, so that only the map's own memory is measured.
func batch(_ range: Range<Int>) -> [ResolutionObservation] {
    range.map { index in
        let address = index % 2 == 0
            ? IPAddressKey("10.\(index >> 16 & 0xFF).\(index >> 8 & 0xFF).\(index & 0xFF)")!
            : IPAddressKey("2001:db8::\(String(index >> 16, radix: 16)):\(String(index & 0xFFFF, radix: 16))")!
        let name = "host\(index).customer\(index % 97).example.com"
        // Every third: www → edge (CNAME) → host; the others answer their own name.
        return index % 3 == 0
            ? ResolutionObservation(
                address: address, name: "www\(index).shop.example.net", targets: ["edge\(index).cdn.example.org", name],
                ttl: 300, seenAtMicros: now)
            : ResolutionObservation(address: address, name: name, ttl: 300, seenAtMicros: now)
    }
}

let before = residentBytes()
var elapsed = Duration.zero
var recorded = 0
let clock = ContinuousClock()
for start in stride(from: 0, to: entries, by: 10_000) {
    let observations = batch(start..<min(start + 10_000, entries))
    var second = observations.enumerated().compactMap { offset, observation -> ResolutionObservation? in
        guard (start + offset) % 5 == 0 else { return nil }
        var other = observation
        other.name = "alias\(start + offset).example.com"
        other.targets = []
        return other
    }
    elapsed += clock.measure { map.record(observations) }
    elapsed += clock.measure { map.record(second) }
    recorded += observations.count + second.count
    second.removeAll()
}
let after = residentBytes()
let statistics = map.statistics
let perEntry = Double(after - before) / Double(statistics.entries)
print("resolution map: \(statistics.entries) addresses, \(recorded) observations recorded")
print(String(format: "resolution map: %.0f bytes per address (RSS %.1f MiB -> %.1f MiB)", perEntry,
             Double(before) / 1_048_576, Double(after) / 1_048_576))
print(String(format: "resolution map: %.0f observations/s recorded (one thread)", Double(recorded) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)))
withExtendedLifetime(map) {}
