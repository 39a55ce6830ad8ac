import AsyncHTTPClient
import DnstapForwarder
import DnstapForwarderTesting
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// A GET (or another method) against the forwarder's admin API over real HTTP.
struct AdminReply {
    var status: Int
    var contentType: String
    var body: String

    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
    }
}

extension RunningForwarder {
    func admin(_ path: String, method: HTTPMethod = .GET) async throws -> AdminReply {
        let address = try await application.admin!.boundAddress()
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(address.port!)\(path)")
        request.method = method
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 4 << 20)
        return AdminReply(
            status: Int(response.status.code), contentType: response.headers.first(name: "Content-Type") ?? "",
            body: String(buffer: body))
    }
}

/// Prometheus text format 0.0.4, parsed strictly enough to catch a malformed exposition:
/// `# TYPE` lines, and `name{labels} value` samples whose family was declared.
struct PrometheusText {
    var samples: [String: Double] = [:]
    var types: [String: String] = [:]

    init(_ text: String) throws {
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                try #require(parts.count == 4, "bad TYPE line: \(line)")
                try #require(["counter", "gauge", "histogram", "summary", "untyped"].contains(String(parts[3])))
                types[String(parts[2])] = String(parts[3])
                continue
            }
            if line.hasPrefix("#") { continue }
            let space = try #require(line.lastIndex(of: " "), "no value: \(line)")
            let key = String(line[..<space])
            let value = try #require(Double(line[line.index(after: space)...]), "bad value: \(line)")
            let family = String(key.prefix { $0 != "{" })
            try #require(family.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" }, "bad name: \(line)")
            // A histogram's or summary's samples are its name with _bucket, _sum or _count.
            var declared = types[family]
            for suffix in ["_bucket", "_sum", "_count"] where declared == nil && family.hasSuffix(suffix) {
                let type = types[String(family.dropLast(suffix.count))]
                if type == "histogram" || type == "summary" { declared = type }
            }
            try #require(declared != nil, "sample before its TYPE: \(line)")
            if key.contains("{") { try #require(key.hasSuffix("}"), "bad labels: \(line)") }
            samples[key] = value
        }
    }

    subscript(_ key: String) -> Double? { samples[key] }
}

@Suite("admin API over HTTP")
struct AdminAPITests {
    @Test("/healthz, /readyz, and bad requests: unknown path, wrong method, bad IP, missing client id")
    func basicsAndBadInput() async throws {
        _ = try await withForwarder { forwarder in
            let health = try await forwarder.admin("/healthz")
            #expect(health.status == 200)
            #expect(health.json["status"] as? String == "ok")
            #expect(health.contentType == "application/json")
            let ready = try await forwarder.admin("/readyz")
            #expect(ready.status == 200, "\(ready.body)")
            #expect(ready.json["status"] as? String == "ready")

            #expect(try await forwarder.admin("/nope").status == 404)
            #expect(try await forwarder.admin("/healthz", method: .POST).status == 405)
            let badIP = try await forwarder.admin("/v1/resolve/not-an-ip")
            #expect(badIP.status == 400)
            #expect((badIP.json["error"] as? String)?.contains("not an IPv4 or IPv6 address") == true)
            #expect(try await forwarder.admin("/v1/resolve/300.1.2.3").status == 400)
            let unknown = try await forwarder.admin("/v1/resolve/192.0.2.200")
            #expect(unknown.status == 404)
            #expect(try await forwarder.admin("/v1/connections").status == 400)
            #expect(try await forwarder.admin("/v1/connections?client_id=").status == 400)
            #expect(try await forwarder.admin("/v1/connections?client_id=a%20b").status == 400)
            #expect(try await forwarder.admin("/v1/connections?client_id=ok-1").status == 200)
        }
    }

    @Test("/v1/resolve answers from the responses seen, with the CNAME chain; /metrics and /stats count what was sent")
    func resolveMetricsAndStats() async throws {
        let aaaa: [UInt8] = [0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [0x42]
        let response = DNSWireBuilder.response(name: "Edge.Example.TEST", type: 28, answers: [
            .cname("edge.example.test", "edge.cdn.test", ttl: 120), .aaaa("edge.cdn.test", aaaa, ttl: 600),
        ])
        let payloads = [
            DnstapBuilder.message(type: .clientQuery, query: DNSWireBuilder.query(name: "Edge.Example.TEST", type: 28), responseTime: nil),
            DnstapBuilder.message(type: .clientResponse, response: response, responseTime: Self.now()),
            [0xFF, 0xFF, 0xFF],  // not a protobuf: one decode error
        ] + DnstapBuilder.pairs(20, prefix: "n", suffix: ".test").payloads
        let ((), summary) = try await withForwarder { forwarder in
            try await sendSession(payloads, to: forwarder)
            await forwarder.application.registry.waitUntilActive(atMost: 0)

            let resolved = try await forwarder.admin("/v1/resolve/2001:db8::42")
            #expect(resolved.status == 200, "\(resolved.body)")
            #expect(resolved.json["address"] as? String == "2001:db8::42")
            let names = try #require(resolved.json["names"] as? [[String: Any]])
            #expect(names.count == 1)
            #expect(names.first?["name"] as? String == "edge.example.test")
            #expect(names.first?["canonical_name"] as? String == "edge.cdn.test")
            #expect(names.first?["chain"] as? [String] == ["edge.example.test", "edge.cdn.test"])
            #expect((names.first?["expires_at"] as? String)?.hasSuffix("Z") == true)

            let metrics = try await forwarder.admin("/metrics")
            #expect(metrics.status == 200)
            #expect(metrics.contentType.hasPrefix("text/plain; version=0.0.4"))
            let parsed = try PrometheusText(metrics.body)
            #expect(parsed["dnstap_frames_total"] == Double(payloads.count))
            #expect(parsed["dnstap_decode_errors_total{kind=\"protobuf\"}"] == 1)
            #expect(parsed["dnstap_connections_accepted_total"] == 1)
            #expect(parsed["dnstap_connections_closed_total{reason=\"stop\"}"] == 1)
            #expect(parsed["dnstap_connections_rejected_total{reason=\"connection_cap\"}"] == 0)
            #expect(parsed["dnstap_connections_rejected_total{reason=\"tls_handshake_failed\"}"] == 0)
            #expect(parsed["dnstap_events_queued_total"] == Double(payloads.count - 1))
            #expect(parsed["dnstap_connections_active"] == 0)
            #expect(parsed["dnstap_resolution_map_lookups_total{result=\"hit\"}"] == 1)
            // Only the response stamped now maps: the pairs carry a 2023 response time, long expired.
            #expect(parsed["dnstap_resolution_map_insertions_total"] == 1)
            #expect(parsed["dnstap_listening"] == 1)
            #expect(parsed["dnstap_output_ready"] == 1)
            #expect(parsed.types["dnstap_frames_total"] == "counter")
            #expect(parsed.types["dnstap_buffer_events"] == "gauge")

            let stats = try await forwarder.admin("/stats")
            #expect(stats.status == 200)
            #expect(stats.json["frames"] as? Int == payloads.count)
            let connections = try #require(stats.json["connections"] as? [String: Any])
            #expect(connections["accepted"] as? Int == 1)
            #expect((connections["closed"] as? [String: Int])?["stop"] == 1)
            #expect((stats.json["decode_errors"] as? [String: Int])?["protobuf"] == 1)
            #expect((stats.json["resolution_map"] as? [String: Int])?["entries"] == 1)
        }
        #expect(summary.undelivered == 0)
    }

    @Test("/v1/connections over HTTP: two clients, deltas, closed connections once each")
    func connectionsTwoClients() async throws {
        _ = try await withForwarder { forwarder in
            func frames(_ reply: AdminReply, _ key: String) -> Int {
                ((reply.json[key] as? [[String: Any]]) ?? []).reduce(0) { $0 + (($1["delta"] as? [String: Int])?["frames"] ?? 0) }
            }
            #expect(try await forwarder.admin("/v1/connections?client_id=fast").status == 200)
            #expect(try await forwarder.admin("/v1/connections?client_id=slow").status == 200)
            let client = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            try await client.handshake()
            try await client.sendData(DnstapBuilder.pairs(10, prefix: "a", suffix: ".test").payloads)
            try await within(30, "10 events") { await forwarder.sink.waitForCount(10) }
            let first = try await forwarder.admin("/v1/connections?client_id=fast")
            let active = try #require(first.json["active"] as? [[String: Any]])
            #expect(active.count == 1)
            #expect(active.first?["frames"] as? Int == 10)
            #expect(active.first?["state"] as? String == "open")
            #expect(active.first?["transport"] as? String == "unix")
            #expect(frames(first, "active") == 10)
            try await client.sendData(DnstapBuilder.pairs(6, prefix: "b", suffix: ".test").payloads)
            try await client.send(FrameStreamsTestClient.stop)
            _ = await client.waitForClose()
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            let second = try await forwarder.admin("/v1/connections?client_id=fast")
            #expect((second.json["active"] as? [[String: Any]])?.isEmpty == true)
            let closed = try #require(second.json["closed"] as? [[String: Any]])
            #expect(closed.count == 1)
            #expect(closed.first?["close_reason"] as? String == "stop")
            #expect(closed.first?["frames"] as? Int == 16)
            #expect(frames(second, "closed") == 6)
            let slow = try await forwarder.admin("/v1/connections?client_id=slow")
            #expect(frames(slow, "closed") == 16)
            #expect(slow.json["previous_fetch"] is String)
            #expect((try await forwarder.admin("/v1/connections?client_id=fast").json["closed"] as? [Any])?.isEmpty == true)
        }
    }

    @Test("/readyz reports a refused HEC token, and recovers when HEC takes the token again")
    func readinessFollowsHEC() async throws {
        let server = try await HECTestServer()
        server.setDefault(.respond(status: 403, body: #"{"text":"Invalid token","code":4}"#))
        let recorder = LogRecorder()
        _ = try await withForwarder(HECTests.configure(server), sink: nil, logger: recorder.logger()) { forwarder in
            let client = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            try await client.handshake()
            try await client.sendData(DnstapBuilder.pairs(2, prefix: "r", suffix: ".test").payloads)
            try await within(30, "a refused request") { await recorder.waitFor("HEC refuses the token") }
            let refused = try await forwarder.admin("/readyz")
            #expect(refused.status == 503)
            #expect(refused.json["status"] as? String == "not_ready")
            #expect((refused.json["reasons"] as? [String])?.first?.contains("refuses the token") == true, "\(refused.body)")
            server.setDefault(.respond(status: 200, body: #"{"text":"Success","code":0}"#))
            try await within(30, "events at HEC") { await server.waitForEvents(2) }
            try await within(30, "HEC taking requests again") { await recorder.waitFor("HEC accepts requests again") }
            #expect(try await forwarder.admin("/readyz").status == 200)
            try await client.send(FrameStreamsTestClient.stop)
        }
        await server.stop()
    }

    static func now() -> (UInt64, UInt32) {
        let seconds = Date().timeIntervalSince1970
        return (UInt64(seconds), UInt32((seconds - seconds.rounded(.down)) * 1e9))
    }
}
