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
        let rules = try String(contentsOfFile: Self.config + "/alerts.yml", encoding: .utf8)
            .split(separator: "\n").filter { $0.trimmingCharacters(in: .whitespaces).hasPrefix("- alert:") }.count
        #expect(rules >= 7)
        #expect(check.status == 0 && check.output.contains("SUCCESS: \(rules) rules found"), "every alert is a rule promtool reads: \(check.output)")
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

    /// Every query of the Grafana dashboard, its variables filled in for an instant query.
    static func dashboardQueries() throws -> [(panel: String, expression: String)] {
        let data = try Data(contentsOf: packageRoot.appendingPathComponent("config/grafana/dnstap-forwarder.json"))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        return panels.flatMap { panel in
            ((panel["targets"] as? [[String: Any]]) ?? []).compactMap { target in
                (target["expr"] as? String).map {
                    (panel["title"] as? String ?? "?", $0.replacingOccurrences(of: "$__rate_interval", with: "30s")
                        .replacingOccurrences(of: "$instance", with: ".*"))
                }
            }
        }
    }

    @Test("a real Prometheus scrapes /metrics: after a session through HEC its API returns the events out, by sender, the rules loaded, and every query of the Grafana dashboard returns data")
    func realPrometheus() async throws {
        let executable = try tool("prometheus")
        let directory = try TemporaryDirectory()
        let queries = try Self.dashboardQueries()
        #expect(queries.count >= 20)
        let (payloads, _) = DnstapBuilder.pairs(400, prefix: "p", suffix: ".prometheus.test")
        let hec = try await HECTestServer()
        defer { Task { await hec.stop() } }
        _ = try await withForwarder(HECTests.configure(hec, { $0.hec.spoolPath = directory.path + "/spool" }), sink: nil) { forwarder -> Void in
            try await sendSession(payloads, to: forwarder)
            try await within(60, "the events at HEC") { await hec.waitForEvents(payloads.count) }
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
            // Asked until a scrape has stored what is asked (each answer is at most a scrape later),
            // within the bound; a rate needs two scrapes.
            func answer(_ expression: String, _ done: @escaping @Sendable (Double?) -> Bool) async throws -> Double? {
                try await within(90, "Prometheus to answer \(expression)") {
                    while true {
                        let value = Self.value((try? await Self.query(url, expression)) ?? [])
                        if done(value) { return value }
                        if !prometheus.process.isRunning { throw TestError.failed("prometheus exited: \(prometheus.text)") }
                        try await Task.sleep(for: .milliseconds(200))
                    }
                }
            }
            let total = Double(payloads.count)
            #expect(try await answer("dnstap_events_out_total") { ($0 ?? 0) >= total } == total)
            #expect(try await answer("dnstap_sender_frames_total{sender=\"uid=\(getuid())\"}") { $0 != nil } == total)
            // A scrape that took over its 1 s (ThreadSanitizer on a loaded machine) stores up=0: a
            // later successful one is what is asked.
            #expect(try await answer("up{job=\"dnstap-forwarder\"}") { $0 == 1 } == 1)
            #expect(try await answer("sum(dnstap_hec_request_duration_seconds_count)") { $0 != nil }.map { $0 >= 1 } == true)
            // Every panel's query names metrics that exist: each returns a sample (a rate once two
            // scrapes are in its window).
            for (panel, expression) in queries {
                let series = try await within(90, "\(panel): \(expression)") {
                    while true {
                        let count = ((try? await Self.query(url, expression)) ?? []).count
                        if count > 0 { return count }
                        try await Task.sleep(for: .milliseconds(200))
                    }
                }
                #expect(series > 0, "\(panel): \(expression)")
            }
            // The rules file loaded, with every rule.
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url + "/api/v1/rules"), timeout: .seconds(10))
            let rules = String(buffer: try await response.body.collect(upTo: 1 << 20))
            for name in ["DnstapSenderSilent", "DnstapEventsDropped", "DnstapBufferFull", "DnstapHECCircuitOpen", "DnstapSpoolFilling", "DnstapConnectionsRejectedAtCap"] {
                #expect(rules.contains("\"name\":\"\(name)\""), "\(name) in \(rules.prefix(400))")
            }
        }
    }
}
