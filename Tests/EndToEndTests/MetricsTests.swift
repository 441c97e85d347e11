import Foundation
import Glibc
import PostfixLab
import Synchronization
import Testing

/// The port of the metrics endpoint, picked the way PostfixLab picks Postfix's.
enum MetricsPort {
    static let port: UInt16 = (try? freeLoopbackPort()) ?? 29_325
    static let config = "metrics = \"127.0.0.1:\(port)\"\n" + SharemailConfig.standard()
}

/// The Prometheus endpoint (`metrics = "127.0.0.1:PORT"`) after real mail went through Postfix.
@Suite("Metrics endpoint", .serialized, .e2eEnvironment(sharemail: MetricsPort.config))
struct MetricsTests {
    static var port: UInt16 { MetricsPort.port }

    let env: E2EEnvironment

    init() throws {
        env = try E2EEnvironment.current()
        try env.beginTest()
    }

    @Test("Messages by direction and action, refused recipients, decision times and reloads are counted")
    func countersMove() throws {
        let sharemail = try #require(env.sharemail)
        let before = try Self.scrape()
        #expect(before.value("sharemail_decision_seconds_count") ?? 0 == 0, "\(before.text)")

        let inbound = try env.send(
            as: .internet, from: "customer@customer.test", to: ["sales@example.com"],
            message: message(["From: customer@customer.test", "To: sales@example.com", "Subject: m1"]))
        let outbound = try env.send(
            as: .staff(login: "zhangsan"), from: "zhangsan@example.com", to: ["customer@customer.test"],
            message: message(["From: zhangsan@example.com", "To: customer@customer.test", "Subject: m2"]))
        let refused = try env.send(
            as: .internet, from: "customer@customer.test", to: ["lisi@example.com"],
            message: message(["From: customer@customer.test", "To: lisi@example.com", "Subject: m3"]))
        #expect(inbound.accepted && outbound.accepted, "\(inbound)\n\(outbound)\n\(env.diagnostics)")
        #expect(refused.rcpt.first?.code == 550, "\(refused)")

        // One good reload, one refused.
        try sharemail.reload()
        #expect(poll(timeout: .seconds(10)) { sharemail.log(since: 0).contains("configuration reloaded") })
        let good = try String(contentsOfFile: sharemail.configPath, encoding: .utf8)
        try sharemail.rewriteConfig("colour = \"blue\"\n" + good)
        try sharemail.reload()
        #expect(poll(timeout: .seconds(10)) { sharemail.log(since: 0).contains("reload refused") })
        try sharemail.rewriteConfig(good)

        let after = try Self.scrape()
        let messages = "sharemail_messages_total"
        #expect(after.value(messages, ["direction": "inbound", "action": "accept"]) == 1, "\(after.text)")
        #expect(after.value(messages, ["direction": "staff", "action": "accept"]) == 1, "\(after.text)")
        #expect(after.value(messages, ["direction": "inbound", "action": "reject"]) ?? 0 == 0, "\(after.text)")
        #expect(after.value("sharemail_recipients_rejected_total") == 1, "\(after.text)")
        #expect(after.value("sharemail_decision_seconds_count") == 2, "\(after.text)")
        #expect(after.value("sharemail_decision_seconds_bucket", ["le": "+Inf"]) == 2, "\(after.text)")
        #expect((after.value("sharemail_decision_seconds_sum") ?? 0) > 0, "\(after.text)")
        #expect(after.value("sharemail_config_reloads_total", ["result": "success"]) == 1, "\(after.text)")
        #expect(after.value("sharemail_config_reloads_total", ["result": "failure"]) == 1, "\(after.text)")
    }

    @Test("Anything but /metrics is a 404")
    func notFound() throws {
        let response = try Self.get("/")
        #expect(response.hasPrefix("HTTP/1.1 404"), "\(response)")
    }

    @Test("A connection that sends nothing is closed after the 5 s read timeout")
    func silentConnectionIsClosed() throws {
        let fd = try connectLoopback(port: Self.port, timeoutSeconds: 30)
        defer { close(fd) }
        let waited = try Self.timeUntilClosed(fd)
        #expect(waited >= .seconds(4) && waited < .seconds(9), "closed after \(waited)")
    }

    @Test("A connection that trickles a byte a second is closed after the 10 s idle timeout")
    func tricklingConnectionIsClosed() throws {
        let fd = try connectLoopback(port: Self.port, timeoutSeconds: 30)
        defer { close(fd) }
        let start = ContinuousClock.now
        var open = true
        for byte in Array("GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa".utf8) where open {
            open = [byte].withUnsafeBytes { send(fd, $0.baseAddress, 1, Int32(MSG_NOSIGNAL)) } == 1 && !Self.isClosed(fd)
            if open { usleep(1_000_000) }
            if ContinuousClock.now - start > .seconds(20) { break }
        }
        let waited = ContinuousClock.now - start
        #expect(!open, "still open after \(waited)")
        #expect(waited >= .seconds(9) && waited < .seconds(14), "closed after \(waited)")
    }

    @Test("At most 32 connections at once: another is closed at once, and scrapes work again when they go")
    func connectionLimit() throws {
        var held: [Int32] = []
        defer { for fd in held { close(fd) } }
        for _ in 0..<32 { held.append(try connectLoopback(port: Self.port, timeoutSeconds: 10)) }
        usleep(200_000)  // all accepted
        let extra = try connectLoopback(port: Self.port, timeoutSeconds: 10)
        defer { close(extra) }
        let waited = try Self.timeUntilClosed(extra)
        #expect(waited < .seconds(2), "the 33rd connection stayed open \(waited)")
        for fd in held { close(fd) }
        held = []
        #expect(poll(timeout: .seconds(5)) { (try? Self.scrape()) != nil }, "no scrape after the connections closed")
    }

    /// Blocks until the server closes `fd` (EOF or reset); how long that took.
    static func timeUntilClosed(_ fd: Int32) throws -> Duration {
        let start = ContinuousClock.now
        var byte: UInt8 = 0
        while ContinuousClock.now - start < .seconds(30) {
            let count = recv(fd, &byte, 1, 0)
            if count == 0 || (count < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                return ContinuousClock.now - start
            }
        }
        throw LabError("still open after 30 s")
    }

    static func isClosed(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        let count = recv(fd, &byte, 1, Int32(MSG_DONTWAIT))
        return count == 0 || (count < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
    }

    // MARK: A scrape

    /// Prometheus text: `name{label="value",…} number` lines.
    struct Scrape {
        let text: String

        /// The sample named `name` whose labels include `labels` (order and other labels ignored).
        func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
            for line in text.split(separator: "\n") where !line.hasPrefix("#") {
                let parts = line.split(separator: " ")
                guard parts.count >= 2 else { continue }
                let series = parts[0]
                let (sampleName, labelText) =
                    series.firstIndex(of: "{").map {
                        (series[..<$0], series[$0...])
                    } ?? (series[...], "")
                guard sampleName == name else { continue }
                if labels.allSatisfy({ labelText.contains("\($0.key)=\"\($0.value)\"") }) { return Double(parts[1]) }
            }
            return nil
        }
    }

    static func scrape() throws -> Scrape {
        let response = try get("/metrics")
        guard response.hasPrefix("HTTP/1.1 200"), let body = response.range(of: "\r\n\r\n") else {
            throw LabError("GET /metrics: \(response.prefix(500))")
        }
        return Scrape(text: String(response[body.upperBound...]))
    }

    /// A plain HTTP/1.1 GET on 127.0.0.1:`port`; the server closes after the response.
    static func get(_ path: String) throws -> String {
        try httpGet(port: port, path: path)
    }
}
