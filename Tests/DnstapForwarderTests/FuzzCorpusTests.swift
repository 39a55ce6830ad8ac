import DnstapFuzzTargets
import Foundation
import Testing

/// The fuzz targets (scripts/fuzz.sh) over the committed seed corpus and every past finding, so a
/// regression fails here too, without a fuzzer. A failed check stops the process.
@Suite("fuzz corpus and findings")
struct FuzzCorpusTests {
    static let fuzzDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz")

    static func inputs(_ kind: String, _ target: FuzzTarget) throws -> [[UInt8]] {
        let directory = fuzzDirectory.appendingPathComponent(kind).appendingPathComponent(target.rawValue)
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path) else { return [] }
        return try names.sorted().map { [UInt8](try Data(contentsOf: directory.appendingPathComponent($0))) }
    }

    @Test("every seed and every past finding passes the target's checks", arguments: FuzzTarget.allCases)
    func corpus(target: FuzzTarget) throws {
        let seeds = try Self.inputs("corpus", target)
        #expect(seeds.count >= 5, "the seed corpus of \(target.rawValue) is missing")
        for input in try seeds + Self.inputs("findings", target) {
            target.run(input)
        }
    }

    @Test("the JSON check the fuzzers rely on refuses what is not one JSON object line")
    func jsonCheck() {
        let good = #"{"a":"x\"\u0001","b":[1,-2.5e3,true,null],"c":{"d":0}}"#
        #expect(JSONCheck.problem(inEvent: Array(good.utf8)) == nil)
        let bad = [
            #"{"a":1,}"#, #"{"a":01}"#, #"{"a":"\x"}"#, "{\"a\":\"\u{1}\"}", #"{"a":1}{"#, #"["a"]"#,
            #"{"a":1,"a":2}"#, "{\"a\":\n1}", #"{"a":tru}"#, #"{"a":1"#,
        ]
        for text in bad {
            #expect(JSONCheck.problem(inEvent: Array(text.utf8)) != nil, "accepted: \(text)")
        }
        #expect(JSONCheck.problem(inEvent: [0x7B, 0x22, 0xC3, 0x28, 0x22, 0x3A, 0x31, 0x7D]) != nil)
    }
}
