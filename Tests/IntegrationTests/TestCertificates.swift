import Foundation
import NIOSSL
import Testing

/// The certificates of the TLS tests, made with `openssl` in a temporary directory (README,
/// "Securing the TCP listener", makes them the same way):
/// - a CA, and a server certificate from it for `dnstap-forwarder.test` and `IP:127.0.0.1`;
/// - client certificates from that CA: `resolver1.example` (a DNS subject alternative name), one
///   with only a common name, and one expired;
/// - a client certificate from another CA.
struct TestCertificates {
    let directory: String
    var caCertificate: String { directory + "/ca.crt" }
    var serverCertificate: String { directory + "/server.crt" }
    var serverKey: String { directory + "/server.key" }

    struct Client {
        let certificate: String
        let key: String
    }

    var resolver: Client { client("resolver1") }
    var commonNameOnly: Client { client("cn-only") }
    var expired: Client { client("expired") }
    var otherCA: Client { client("other") }

    func client(_ name: String) -> Client { Client(certificate: "\(directory)/\(name).crt", key: "\(directory)/\(name).key") }

    static let serverName = "dnstap-forwarder.test"

    static func make(in directory: String) async throws -> TestCertificates {
        let made = TestCertificates(directory: directory)
        try await made.authority("ca", subject: "/CN=dnstap test senders CA")
        try await made.authority("other-ca", subject: "/CN=some other CA")
        try await made.issue(
            "server", subject: "/CN=\(serverName)", by: "ca",
            extensions: "subjectAltName=DNS:\(serverName),IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        try await made.issue(
            "resolver1", subject: "/CN=resolver1 common name", by: "ca",
            extensions: "subjectAltName=DNS:resolver1.example,DNS:second.example\nextendedKeyUsage=clientAuth\n")
        try await made.issue("cn-only", subject: "/CN=resolver-cn-only", by: "ca", extensions: "extendedKeyUsage=clientAuth\n")
        try await made.issue("other", subject: "/CN=intruder.example", by: "other-ca", extensions: "subjectAltName=DNS:intruder.example\n")
        try await made.issueExpired("expired", subject: "/CN=expired.example", by: "ca")
        return made
    }

    /// A server certificate for another name, from the same CA (for the rotation tests).
    func issueServer(_ name: String, commonName: String) async throws -> Client {
        try await issue(name, subject: "/CN=\(commonName)", by: "ca", extensions: "subjectAltName=DNS:\(commonName),IP:127.0.0.1\n")
        return client(name)
    }

    /// A client TLS context presenting `client` (nil: no certificate) and trusting the test CA.
    func clientContext(_ client: Client?) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .file(caCertificate)
        configuration.certificateVerification = .noHostnameVerification
        if let client {
            configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(client.certificate).map { .certificate($0) }
            configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: client.key, format: .pem))
        }
        return try NIOSSLContext(configuration: configuration)
    }

    private func openssl(_ arguments: [String]) async throws {
        let result = try await run(try tool("openssl"), arguments)
        guard result.status == 0 else { throw TestError.failed("openssl \(arguments.joined(separator: " ")): \(result.output)") }
    }

    private func authority(_ name: String, subject: String) async throws {
        try await openssl([
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "\(directory)/\(name).key",
            "-out", "\(directory)/\(name).crt", "-days", "2", "-subj", subject,
        ])
    }

    private func request(_ name: String, subject: String) async throws {
        try await openssl([
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "\(directory)/\(name).key",
            "-out", "\(directory)/\(name).csr", "-subj", subject,
        ])
    }

    private func issue(_ name: String, subject: String, by authority: String, extensions: String) async throws {
        try await request(name, subject: subject)
        try extensions.write(toFile: "\(directory)/\(name).ext", atomically: true, encoding: .utf8)
        try await openssl([
            "x509", "-req", "-in", "\(directory)/\(name).csr", "-CA", "\(directory)/\(authority).crt",
            "-CAkey", "\(directory)/\(authority).key", "-CAcreateserial", "-out", "\(directory)/\(name).crt", "-days", "2",
            "-extfile", "\(directory)/\(name).ext",
        ])
    }

    /// `openssl x509` cannot date a certificate in the past; `openssl ca` can.
    private func issueExpired(_ name: String, subject: String, by authority: String) async throws {
        try await request(name, subject: subject)
        let ca = "\(directory)/\(name)-ca"
        try FileManager.default.createDirectory(atPath: ca, withIntermediateDirectories: true)
        try "".write(toFile: ca + "/index.txt", atomically: true, encoding: .utf8)
        try "1000\n".write(toFile: ca + "/serial", atomically: true, encoding: .utf8)
        try """
            [ca]
            default_ca = test
            [test]
            database = \(ca)/index.txt
            new_certs_dir = \(ca)
            serial = \(ca)/serial
            default_md = sha256
            policy = any
            unique_subject = no
            [any]
            commonName = supplied
            """.write(toFile: ca + "/ca.cnf", atomically: true, encoding: .utf8)
        try await openssl([
            "ca", "-batch", "-config", ca + "/ca.cnf", "-cert", "\(directory)/\(authority).crt", "-keyfile", "\(directory)/\(authority).key",
            "-in", "\(directory)/\(name).csr", "-out", "\(directory)/\(name).crt", "-startdate", "20200101000000Z",
            "-enddate", "20200102000000Z", "-notext",
        ])
    }
}
