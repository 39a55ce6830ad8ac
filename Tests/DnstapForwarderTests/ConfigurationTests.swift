import Testing

@testable import DnstapForwarder

@Suite("configuration")
struct ConfigurationTests {
    @Test("defaults: a unix socket, stdout, auto cap from the buffer size")
    func defaults() throws {
        let config = try ForwarderConfiguration.resolve(flags: [:], environment: [:])
        #expect(config.listenAddresses == [.unix(path: "/tmp/dnstap.sock")])
        #expect(config.output == .stdout)
        #expect(config.bufferSize == 10_000)
        #expect(config.maxConnections == 500)
        #expect(config.maxConnectionsIsAuto)
        #expect(config.idleTimeout == .seconds(600))
        #expect(config.shutdownTimeout == .seconds(30))
        #expect(config.unixSocketMode == 0o660)
    }

    @Test("auto max connections is buffer size / 10 clamped to 10...500")
    func autoCap() throws {
        #expect(try ForwarderConfiguration.resolve(flags: [.bufferSize: "50", .batchSize: "10"], environment: [:]).maxConnections == 10)
        #expect(try ForwarderConfiguration.resolve(flags: [.bufferSize: "1000"], environment: [:]).maxConnections == 100)
        #expect(try ForwarderConfiguration.resolve(flags: [.bufferSize: "99999"], environment: [:]).maxConnections == 500)
    }

    @Test("a flag wins over the environment, the environment over the default")
    func precedence() throws {
        let environment = ["DNSTAP_MAX_CONNECTIONS": "42", "DNSTAP_BATCH_SIZE": "7"]
        let config = try ForwarderConfiguration.resolve(flags: [.maxConnections: "200"], environment: environment)
        #expect(config.maxConnections == 200)
        #expect(!config.maxConnectionsIsAuto)
        #expect(config.batchSize == 7)
        #expect(config.flushInterval == .seconds(1))
    }

    @Test("the earlier Go forwarder's environment names are read")
    func legacyEnvironment() throws {
        let config = try ForwarderConfiguration.resolve(
            flags: [:], environment: ["DNSTAP_SOCKET_PATH": "/run/old.sock", "DNSTAP_FLUSH_INTERVAL_SEC": "5"])
        #expect(config.unixSocketPath == "/run/old.sock")
        #expect(config.flushInterval == .seconds(5))
        let primary = try ForwarderConfiguration.resolve(
            flags: [:], environment: ["DNSTAP_UNIX_SOCKET": "/run/new.sock", "DNSTAP_SOCKET_PATH": "/run/old.sock"])
        #expect(primary.unixSocketPath == "/run/new.sock")
    }

    @Test("the brief's usage example resolves as written")
    func briefExample() throws {
        let config = try ForwarderConfiguration.resolve(
            flags: [
                .maxConnections: "200", .bufferSize: "1000", .batchSize: "100", .flushInterval: "1", .logLevel: "info",
                .outputType: "hec", .hecURL: "https://splunk.example.com:8088/services/collector", .hecToken: "your-token",
            ],
            environment: [:])
        #expect(config.maxConnections == 200)
        #expect(config.bufferSize == 1000)
        #expect(config.flushInterval == .seconds(1))
        #expect(config.output == .hec([try HECEndpoint("https://splunk.example.com:8088/services/collector")], token: "your-token"))
        #expect(config.logMetadata["hec_token"] == "<redacted>")
        #expect(!"\(config.logMetadata)".contains("your-token"))
    }

    @Test("-hec-url takes a comma-separated list; an empty item or a URL given twice is refused, naming the flag")
    func hecURLList() throws {
        func resolve(_ urls: String) throws -> ForwarderConfiguration {
            try ForwarderConfiguration.resolve(flags: [.outputType: "hec", .hecURL: urls, .hecToken: "t"], environment: [:])
        }
        let config = try resolve("https://idx1:8088, https://idx2:8088/services/collector ,http://idx3:8088")
        guard case .hec(let endpoints, _) = config.output else {
            Issue.record("a HEC output")
            return
        }
        #expect(endpoints.map(\.eventURL) == [
            "https://idx1:8088/services/collector/event", "https://idx2:8088/services/collector", "http://idx3:8088/services/collector/event",
        ])
        #expect(config.logMetadata["hec_url"] == "\(endpoints.map(\.eventURL).joined(separator: ","))")
        for bad in ["https://a:8088,,https://b:8088", "https://a:8088,", "https://a:8088,https://a:8088/services/collector/event", "https://a:8088,b:8088"] {
            #expect(throws: ConfigurationError.self, "\(bad)") { try resolve(bad) }
            do { _ = try resolve(bad) } catch { #expect("\(error)".contains("-hec-url"), "\(error)") }
        }
    }

    @Test("TCP only turns the default unix socket off; both can be given")
    func listeners() throws {
        let tcp = try ForwarderConfiguration.resolve(flags: [.tcpListen: "127.0.0.1:6000"], environment: [:])
        #expect(tcp.listenAddresses == [.tcp(host: "127.0.0.1", port: 6000)])
        let both = try ForwarderConfiguration.resolve(flags: [.tcpListen: "[::1]:0", .unixSocket: "/tmp/x.sock"], environment: [:])
        #expect(both.listenAddresses == [.unix(path: "/tmp/x.sock"), .tcp(host: "::1", port: 0)])
    }

    @Test("durations and sizes in their several spellings")
    func syntaxes() throws {
        let config = try ForwarderConfiguration.resolve(
            flags: [.idleTimeout: "0", .handshakeTimeout: "500ms", .shutdownTimeout: "2m", .maxFrameSize: "256KiB"],
            environment: [:])
        #expect(config.idleTimeout == nil)
        #expect(config.handshakeTimeout == .milliseconds(500))
        #expect(config.shutdownTimeout == .seconds(120))
        #expect(config.maxFrameSize == 262_144)
    }

    @Test(
        "bad values are clear errors naming the flag and the env var",
        arguments: [
            (Setting.maxConnections, "many"), (.bufferSize, "-1"), (.batchSize, "0"), (.flushInterval, "soon"),
            (.tcpListen, "nohost"), (.tcpListen, "1.2.3.4:99999"), (.unixSocketMode, "999"), (.logLevel, "loud"),
            (.outputType, "kafka"), (.maxFrameSize, "12"), (.handshakeTimeout, "0"), (.hecGzipLevel, "0"), (.hecGzipLevel, "10"),
        ])
    func badValues(setting: Setting, value: String) {
        do {
            _ = try ForwarderConfiguration.resolve(flags: [setting: value], environment: [:])
            Issue.record("\(setting) = \(value) was accepted")
        } catch {
            #expect("\(error)".contains(setting.environmentName) || "\(error)".contains(setting.flag))
        }
    }

    @Test("a bad environment value is an error too, and a secret is never echoed")
    func badEnvironment() {
        #expect(throws: ConfigurationError.self) {
            _ = try ForwarderConfiguration.resolve(flags: [:], environment: ["DNSTAP_BATCH_SIZE": "lots"])
        }
        #expect(!"\(ConfigurationError.invalidValue(.hecToken, "s3cret", "x"))".contains("s3cret"))
    }

    @Test("-batch-size defaults by output: 1000 for stdout and file (a write), 100 for HEC (a request), never over the buffer; given, it wins")
    func batchSizeByOutput() throws {
        let hec: [Setting: String] = [.outputType: "hec", .hecURL: "https://splunk.example.com:8088/services/collector", .hecToken: "t"]
        let file: [Setting: String] = [.outputType: "file", .outputPath: "/tmp/dnstap-test.log"]
        #expect(try ForwarderConfiguration.resolve(flags: [:], environment: [:]).batchSize == 1000)
        #expect(try ForwarderConfiguration.resolve(flags: file, environment: [:]).batchSize == 1000)
        #expect(try ForwarderConfiguration.resolve(flags: hec, environment: [:]).batchSize == 100)
        #expect(try ForwarderConfiguration.resolve(flags: [.bufferSize: "300"], environment: [:]).batchSize == 300)
        #expect(try ForwarderConfiguration.resolve(flags: hec.merging([.bufferSize: "50"]) { $1 }, environment: [:]).batchSize == 50)
        #expect(try ForwarderConfiguration.resolve(flags: [.batchSize: "100"], environment: [:]).batchSize == 100)
        #expect(try ForwarderConfiguration.resolve(flags: hec, environment: ["DNSTAP_BATCH_SIZE": "500"]).batchSize == 500)
    }

    @Test("batch size may not exceed the buffer")
    func batchOverBuffer() {
        #expect(throws: ConfigurationError.self) {
            _ = try ForwarderConfiguration.resolve(flags: [.batchSize: "500", .bufferSize: "100"], environment: [:])
        }
    }

    @Test("flags: one dash or two, -flag value or -flag=value, older spellings, a boolean alone means true")
    func flagSyntax() throws {
        let given = try Setting.parseFlags([
            "-max-connections", "200", "--buffer=1000", "-hec-ack", "--hec-gzip", "false", "-hec-persistent-buf",
            "-socket", "/tmp/a.sock", "-hec-insecure-skip-verify=no", "-idle-timeout", "-1",
        ])
        #expect(given[.maxConnections] == "200")
        #expect(given[.bufferSize] == "1000", "-buffer is the Go forwarder's name")
        #expect(given[.hecAck] == "true", "a boolean alone means true")
        #expect(given[.hecGzip] == "false", "a boolean followed by its value")
        #expect(given[.hecPersistentBuf] == "true", "a boolean before another flag")
        #expect(given[.unixSocket] == "/tmp/a.sock")
        #expect(given[.hecInsecureSkipVerify] == "no")
        #expect(given[.idleTimeout] == "-1", "a value may start with a dash")
        for bad in [["-no-such-flag", "1"], ["-max-connections"], ["stray"], ["-"]] {
            #expect(throws: ConfigurationError.self, "\(bad)") { try Setting.parseFlags(bad) }
        }
    }

    @Test("every declared default resolves, and each setting's default is what --help and the README say")
    func defaultsResolve() throws {
        let config = try ForwarderConfiguration.resolve(flags: [:], environment: [:])
        #expect(config == (try ForwarderConfiguration.resolve(
            flags: Dictionary(uniqueKeysWithValues: Setting.allCases.compactMap { s in s.defaultValue.map { (s, $0) } }), environment: [:])))
        for setting in Setting.allCases {
            #expect(setting.markdownRow.contains(setting.defaultMarkdown) && setting.helpText.contains(setting.defaultDescription))
        }
    }
}
