/// One setting of the service, declared once (in `Settings.swift`): its flag and the older
/// spellings still accepted, its environment variables, its default, its help, and how its value
/// is parsed into the configuration. `--help`, the environment, validation and the README's flag
/// table are all derived from these declarations (a test keeps the README equal to them).
///
/// Flags are accepted with one dash or two (`-max-connections 200`, `--max-connections=200`); a
/// boolean flag given alone means true. A flag wins over the environment, the environment over
/// the default.
public struct Setting: Sendable, Hashable, CustomStringConvertible {
    /// The flag name without dashes.
    public let flag: String
    /// Older spellings (of the earlier Go forwarder) accepted as flags.
    public let legacyFlags: [String]
    /// The environment variable, then older spellings that are still read (first found wins).
    public let environmentNames: [String]
    /// The default, as a user would write it (nil: no default; the setting is off or derived).
    public let defaultValue: String?
    /// How the default reads in `--help` and in the README (Markdown).
    public let defaultMarkdown: String
    /// What the setting does (Markdown, for the README; `--help` shows it without the backticks).
    public let summaryMarkdown: String
    /// Whether the value must never be logged or printed.
    public let isSecret: Bool
    /// A boolean flag: given alone it means true.
    public let isBoolean: Bool
    /// Parses the value into the draft configuration; throws `InvalidValue` with what was expected.
    let apply: @Sendable (String, inout ConfigurationDraft) throws -> Void

    init(
        _ flag: String, legacy: [String] = [], environment legacyEnvironment: [String] = [], default defaultValue: String?,
        shown: String? = nil, secret: Bool = false, boolean: Bool = false, _ summary: String,
        apply: @escaping @Sendable (String, inout ConfigurationDraft) throws -> Void
    ) {
        self.flag = flag
        self.legacyFlags = legacy
        self.environmentNames = ["DNSTAP_" + flag.uppercased().replacingOccurrences(of: "-", with: "_")] + legacyEnvironment
        self.defaultValue = defaultValue
        self.defaultMarkdown = shown ?? defaultValue.map { "`\($0)`" } ?? "none"
        self.summaryMarkdown = summary
        self.isSecret = secret
        self.isBoolean = boolean
        self.apply = apply
    }

    public var environmentName: String { environmentNames[0] }
    public var description: String { "-" + flag }

    /// The default as `--help` shows it.
    public var defaultDescription: String { Self.plain(defaultMarkdown) }
    public var summary: String { Self.plain(summaryMarkdown) }

    /// One line for `--help`: the summary, the environment variable(s) and the default.
    public var helpText: String {
        "\(summary) (env \(environmentNames.joined(separator: ", ")); default \(defaultDescription))"
    }

    /// The setting's row of the README's flag table.
    public var markdownRow: String {
        let flags = (["`-\(flag)`"] + legacyFlags.map { "(`-\($0)`)" }).joined(separator: " ")
        let variables = ([environmentName].map { "`\($0)`" } + environmentNames.dropFirst().map { "(`\($0)`)" }).joined(separator: " ")
        return "| \(flags) | \(variables) | \(defaultMarkdown) | \(summaryMarkdown) |"
    }

    public static func == (lhs: Setting, rhs: Setting) -> Bool { lhs.flag == rhs.flag }
    public func hash(into hasher: inout Hasher) { hasher.combine(flag) }

    static func plain(_ markdown: String) -> String { markdown.replacingOccurrences(of: "`", with: "") }
}

extension Setting {
    /// The README's flag table, as the settings declare it.
    public static var markdownTable: String {
        (["| flag | environment | default | meaning |", "|---|---|---|---|"] + allCases.map(\.markdownRow)).joined(separator: "\n")
    }

    /// Every flag spelling (without dashes) to its setting.
    static let byFlag: [String: Setting] = {
        var table: [String: Setting] = [:]
        for setting in allCases {
            for name in [setting.flag] + setting.legacyFlags { table[name] = setting }
        }
        return table
    }()

    /// Reads `-flag value`, `--flag value`, `-flag=value` and a boolean flag alone.
    /// Throws `ConfigurationError.invalid` for an unknown flag, a missing value or a stray word.
    public static func parseFlags(_ arguments: [String]) throws -> [Setting: String] {
        var given: [Setting: String] = [:]
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("-"), argument.count > 1 else {
                throw ConfigurationError.invalid("unexpected argument '\(argument)' (flags are -name value; see --help)")
            }
            let body = argument.drop { $0 == "-" }
            let name = String(body.prefix { $0 != "=" })
            guard let setting = byFlag[name] else {
                throw ConfigurationError.invalid("unknown flag '\(argument)' (see --help)")
            }
            if let equals = body.firstIndex(of: "=") {
                given[setting] = String(body[body.index(after: equals)...])
            } else if setting.isBoolean, index == arguments.count || ValueParsing.booleanWord(arguments[index]) == nil {
                given[setting] = "true"
            } else {
                guard index < arguments.count else {
                    throw ConfigurationError.invalid("-\(name) needs a value (\(setting.environmentName); see --help)")
                }
                given[setting] = arguments[index]
                index += 1
            }
        }
        return given
    }
}
