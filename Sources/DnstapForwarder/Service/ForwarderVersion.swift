/// The release of this source tree (`dnstap-forwarder --version` adds the git commit).
public enum ForwarderVersion {
    public static let release = "0.9.0"
}
