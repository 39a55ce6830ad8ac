#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOSSL
import X509

/// The TCP listener's TLS files (`-tls-cert-file`, `-tls-key-file`, `-tls-client-ca-file`).
public struct TLSFiles: Equatable, Sendable {
    /// PEM: the server's certificate, then any intermediates.
    public var certificate: String
    /// PEM: the private key of that certificate.
    public var key: String
    /// PEM: the CA that signs the senders' certificates; nil: no client certificate is asked for.
    public var clientCA: String?

    public init(certificate: String, key: String, clientCA: String? = nil) {
        self.certificate = certificate
        self.key = key
        self.clientCA = clientCA
    }

    var paths: [String] { [certificate, key] + (clientCA.map { [$0] } ?? []) }
}

public enum TLSCredentialsError: Error, CustomStringConvertible {
    case cannotLoad(file: String, what: String, detail: String)

    public var description: String {
        switch self {
        case .cannotLoad(let file, let what, let detail): return "cannot load the TLS \(what) from \(file): \(detail)"
        }
    }
}

/// The identity of a file's content as `stat` sees it through symlinks: a Kubernetes secret or
/// cert-manager replacing the file (a new inode, or a new size or time) changes it.
struct FileFingerprint: Equatable, Sendable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modifiedNanos: Int64

    init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        modifiedNanos = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
    }
}

/// The TCP listener's TLS context, loaded from its files, and replaced when they change or on
/// SIGHUP. Each new connection takes the context current at its accept; open connections keep
/// theirs. A file that does not load (half written, wrong key) is logged and the old context kept.
public final class TLSCredentials: Sendable {
    public struct Loaded: Sendable {
        let context: NIOSSLContext
        let fingerprints: [FileFingerprint?]
        /// The server certificate's end of validity, seconds since the epoch.
        public let notValidAfter: Int64
        /// The server certificate's name (for the log).
        public let name: String
    }

    public enum ReloadOutcome: Sendable, Equatable {
        case unchanged
        case reloaded
        case failed(String)
    }

    public let files: TLSFiles
    private let state: Locked<Loaded>

    /// Loads the files; throws a message naming the file that does not load.
    public init(files: TLSFiles) throws {
        self.files = files
        state = Locked(try Self.load(files))
    }

    public var current: Loaded { state.withLock { $0 } }
    public var context: NIOSSLContext { current.context }
    public var requiresClientCertificate: Bool { files.clientCA != nil }

    /// Loads the files again if any changed (or always, with `force`: SIGHUP).
    public func reload(force: Bool) -> ReloadOutcome {
        let fingerprints = files.paths.map(FileFingerprint.init(path:))
        if !force && fingerprints == current.fingerprints { return .unchanged }
        do {
            let loaded = try Self.load(files, fingerprints: fingerprints)
            state.withLock { $0 = loaded }
            return .reloaded
        } catch {
            // The old fingerprints stay: a file half written now is tried again at the next look.
            return .failed("\(error)")
        }
    }

    /// - Parameter fingerprints: the files' as taken before reading them (so a file replaced
    ///   while it is read is seen as changed at the next look).
    static func load(_ files: TLSFiles, fingerprints: [FileFingerprint?]? = nil) throws -> Loaded {
        let fingerprints = fingerprints ?? files.paths.map(FileFingerprint.init(path:))
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(files.certificate)
        } catch {
            throw TLSCredentialsError.cannotLoad(file: files.certificate, what: "certificate", detail: "\(error)")
        }
        guard let leaf = chain.first else {
            throw TLSCredentialsError.cannotLoad(file: files.certificate, what: "certificate", detail: "no PEM certificate in it")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: files.key, format: .pem)
        } catch {
            throw TLSCredentialsError.cannotLoad(file: files.key, what: "private key", detail: "\(error)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        configuration.maximumTLSVersion = .tlsv13
        if let caFile = files.clientCA {
            let roots: [NIOSSLCertificate]
            do {
                roots = try NIOSSLCertificate.fromPEMFile(caFile)
            } catch {
                throw TLSCredentialsError.cannotLoad(file: caFile, what: "client CA", detail: "\(error)")
            }
            guard !roots.isEmpty else {
                throw TLSCredentialsError.cannotLoad(file: caFile, what: "client CA", detail: "no PEM certificate in it")
            }
            configuration.trustRoots = .certificates(roots)
            // A client certificate is required and checked against these roots (chain, validity
            // dates); there is no host name to check on a client.
            configuration.certificateVerification = .noHostnameVerification
            configuration.sendCANameList = true
        }
        let context: NIOSSLContext
        do {
            context = try NIOSSLContext(configuration: configuration)
        } catch {
            // Most often a key that does not belong to the certificate.
            throw TLSCredentialsError.cannotLoad(
                file: files.certificate, what: "certificate and key", detail: "\(error) (does the key belong to the certificate?)")
        }
        return Loaded(
            context: context, fingerprints: fingerprints, notValidAfter: Int64(leaf.notValidAfter),
            name: senderName(of: leaf) ?? "?")
    }

    /// The name a verified client certificate gives the sender: its first DNS subject alternative
    /// name, else its subject's common name.
    public static func senderName(of certificate: NIOSSLCertificate) -> String? {
        guard let der = try? certificate.toDERBytes(), let parsed = try? Certificate(derEncoded: der) else { return nil }
        if let names = try? parsed.extensions.subjectAlternativeNames {
            for case .dnsName(let name) in names { return name }
        }
        var commonName: String?
        for relative in parsed.subject {
            for attribute in relative where attribute.type == .RDNAttributeType.commonName {
                // The most significant (last) common name, as TLS libraries pick it.
                commonName = String(attribute.value) ?? attribute.value.description
            }
        }
        return commonName
    }

    /// Which refusal a TLS error is, from BoringSSL's reason in it.
    static func refusal(for error: any Error) -> RefusalReason {
        let text = String(describing: error)
        if text.contains("PEER_DID_NOT_RETURN_A_CERTIFICATE") || text.contains("CERTIFICATE_REQUIRED") {
            return .noClientCertificate
        }
        if text.contains("CERTIFICATE_VERIFY_FAILED") { return .untrustedCertificate }
        return .tlsHandshakeFailed
    }
}
