import AsyncHTTPClient
import DnstapForwarder
import DnstapForwarderTesting
import Foundation
import NIOCore
import Testing

/// The operator's view in Prometheus: the alerting rules checked and unit-tested with promtool, and
/// a real Prometheus (Debian's) scraping the forwarder.
@Suite("Prometheus", .serialized)
struct PrometheusTests {
    static let config = packageRoot.appendingPathComponent("config/prometheus").path

    @Test("config/prometheus/alerts.yml: promtool checks the rules and runs their unit tests (alerts.test.yml)")
    func rules() async throws {
        let promtool = try tool("promtool")
        let check = try await within(60, "promtool check") { try await run(promtool, ["check", "rules", Self.config + "/alerts.yml"]) }
        #expect(check.status == 0 && check.output.contains("SUCCESS: 6 rules found"), "\(check.output)")
        let test = try await within(120, "promtool test") { try await run(promtool, ["test", "rules", Self.config + "/alerts.test.yml"]) }
        #expect(test.status == 0 && test.output.contains("SUCCESS"), "\(test.output)")
    }

    static func query(_ prometheus: String, _ expression: String) async throws -> [[String: Any]] {
        let encoded = expression.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? expression
        let response = try await HTTPClient.shared.execute(
            HTTPClientRequest(url: "\(prometheus)/api/v1/query?query=\(encoded)"), timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        let bytes = Data(body.readableBytesView)
        let json = try JSONSerialization.jsonObject(with: bytes) as? [String: Any]
        let data = json?["data"] as? [String: Any]
        return data?["result"] as? [[String: Any]] ?? []
    }

    static func value(_ result: [[String: Any]]) -> Double? {
        ((result.first?["value"] as? [Any])?.last as? String).flatMap(Double.init)
    }

    @Test("a real Prometheus scrapes /metrics: after a replay its API returns the events out, by sender, with the rules loaded")
    func realPrometheus() async throws {
        let executable = try tool("prometheus")
        let directory = try TemporaryDirectory()
        let (payloads, _) = DnstapBuilder.pairs(400, prefix: "p", suffix: ".prometheus.test")
        _ = try await withForwarder { forwarder -> Void in
            try await sendSession(payloads, to: forwarder)
            try await within(30, "the events out") { await forwarder.sink.waitUntil { $0.count >= payloads.count } }
            let admin = try await forwarder.application.admin!.boundAddress()
            let port = try freePort()
            try """
                global:
                  scrape_interval: 1s
                  evaluation_interval: 1s
                rule_files:
                  - \(Self.config)/alerts.yml
                scrape_configs:
                  - job_name: dnstap-forwarder
                    static_configs:
                      - targets: ['127.0.0.1:\(admin.port!)']

                """.write(toFile: directory.path + "/prometheus.yml", atomically: true, encoding: .utf8)
            let prometheus = try WatchedProcess(executable, [
                "--config.file=" + directory.path + "/prometheus.yml", "--storage.tsdb.path=" + directory.path + "/data",
                "--web.listen-address=127.0.0.1:\(port)",
            ])
            defer { prometheus.signal(SIGTERM) }
            let url = "http://127.0.0.1:\(port)"
            // Ready once a scrape has stored the counter with every event: the API is asked until
            // it says so (each answer is one scrape later), within the bound.
            let out = try await within(90, "Prometheus to scrape the events out") {
                while true {
                    let result = (try? await Self.query(url, "dnstap_events_out_total")) ?? []
                    if let value = Self.value(result), value >= Double(payloads.count) { return value }
                    if !prometheus.process.isRunning { throw TestError.failed("prometheus exited: \(prometheus.text)") }
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
            #expect(out == Double(payloads.count))
            let frames = Self.value(try await Self.query(url, "dnstap_sender_frames_total{sender=\"uid=\(getuid())\"}"))
            #expect(frames == Double(payloads.count))
            let up = Self.value(try await Self.query(url, "up{job=\"dnstap-forwarder\"}"))
            #expect(up == 1)
            // The rules file loaded, with every rule.
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url + "/api/v1/rules"), timeout: .seconds(10))
            let rules = String(buffer: try await response.body.collect(upTo: 1 << 20))
            for name in ["DnstapSenderSilent", "DnstapEventsDropped", "DnstapBufferFull", "DnstapHECCircuitOpen", "DnstapSpoolFilling", "DnstapConnectionsRejectedAtCap"] {
                #expect(rules.contains("\"name\":\"\(name)\""), "\(name) in \(rules.prefix(400))")
            }
        }
    }
}
