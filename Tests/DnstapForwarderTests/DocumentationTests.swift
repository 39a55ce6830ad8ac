import Foundation
import Testing

@testable import DnstapForwarder

/// The README's flag table and the example env file must name every setting.
@Suite("documentation")
struct DocumentationTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test("every flag and env var is in the README's configuration table", arguments: Setting.allCases)
    func readme(setting: Setting) throws {
        let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        let rows = readme.split(separator: "\n").filter { $0.hasPrefix("| `-") }
        let row = rows.first { $0.hasPrefix("| `-\(setting.flag)`") }
        #expect(row != nil, "no README row for -\(setting.flag)")
        for name in setting.environmentNames + setting.legacyFlags.map({ "-" + $0 }) {
            #expect(row?.contains("`\(name)`") == true, "README row for -\(setting.flag) lacks \(name)")
        }
    }

    @Test("the README's flag table is the one the settings' declarations make (swift run dnstap-forwarder --markdown-flags)")
    func readmeTableIsGenerated() throws {
        let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        #expect(readme.contains(Setting.markdownTable + "\n"), "regenerate the table:\n\(Setting.markdownTable)")
        #expect(Set(Setting.allCases.map(\.flag)).count == Setting.allCases.count, "every flag is declared once")
        let names = Setting.allCases.flatMap { $0.environmentNames + $0.legacyFlags + [$0.flag] }
        #expect(Set(names).count == names.count, "no two settings share a flag or a variable")
    }

    @Test("every env var is in config/dnstap-forwarder.env", arguments: Setting.allCases)
    func envFile(setting: Setting) throws {
        let env = try String(contentsOf: Self.root.appendingPathComponent("config/dnstap-forwarder.env"), encoding: .utf8)
        #expect(env.contains(setting.environmentName + "="), "\(setting.environmentName) missing")
    }

    @Test("the Dockerfile, the Kubernetes and compose examples name only real settings, with valid values")
    func deploymentExamples() throws {
        let known = Set(Setting.allCases.flatMap(\.environmentNames))
        var given: [String: String] = [:]
        for file in ["Dockerfile", "config/kubernetes/unbound-with-dnstap-forwarder.yaml", "config/compose/compose.yaml"] {
            let text = try String(contentsOf: Self.root.appendingPathComponent(file), encoding: .utf8)
            // `NAME=value`, `NAME: value` and `{ name: NAME, value: value }`.
            let pattern = /(DNSTAP_[A-Z0-9_]+)(?:=|:\s*|,\s*value:\s*)"?([^"\s}\\]*)/
            var found = 0
            for match in text.matches(of: pattern) {
                let name = String(match.1)
                #expect(known.contains(name), "\(file) sets \(name), which is no setting")
                given[name] = String(match.2)
                found += 1
            }
            #expect(found >= 3, "\(file): no DNSTAP_ settings found")
        }
        // The values must be accepted by the configuration (a flag-free start with that environment).
        given["DNSTAP_HEC_TOKEN_FILE"] = nil
        given["DNSTAP_HEC_TOKEN"] = "example-token"
        #expect(throws: Never.self) { try ForwarderConfiguration.resolve(flags: [:], environment: given) }
    }
}
