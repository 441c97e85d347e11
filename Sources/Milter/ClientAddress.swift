/// The peer of an SMTP connection as the MTA reports it.
public struct ClientAddress: Hashable, Sendable {
    /// Numeric IPv4 or IPv6 address ("unix" for a unix-socket client).
    public var ip: String
    public var port: Int

    public init(ip: String, port: Int) {
        self.ip = ip
        self.port = port
    }
}
