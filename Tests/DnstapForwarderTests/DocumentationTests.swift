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

    @Test("every env var is in config/dnstap-forwarder.env", arguments: Setting.allCases)
    func envFile(setting: Setting) throws {
        let env = try String(contentsOf: Self.root.appendingPathComponent("config/dnstap-forwarder.env"), encoding: .utf8)
        #expect(env.contains(setting.environmentName + "="), "\(setting.environmentName) missing")
    }
}
