import Foundation
import Glibc
import PostfixLab
import Testing

/// postfix-conf/grafana-dashboard.json against a running sharemail: every metric name its
/// queries use must be served on /metrics, so a renamed metric cannot leave a panel empty.
/// The daemon runs with the conversation memory on (the default file, in a private mount
/// namespace), since the store's error counter exists only then.
@Suite("Grafana dashboard: every metric it queries is served", .serialized)
struct DashboardTests {
    static let dashboard = LabPaths.packageRoot + "/postfix-conf/grafana-dashboard.json"

    @Test("every sharemail_* name in the dashboard's queries appears in a live /metrics response")
    func everyQueriedMetricIsServed() throws {
        let queried = try Self.queriedMetrics()
        // Messages, rejections, tempfails, latency quantiles, store errors, reloads.
        for needed in [
            "sharemail_messages_total", "sharemail_recipients_rejected_total", "sharemail_decision_seconds_bucket",
            "sharemail_store_errors_total", "sharemail_config_reloads_total",
        ] {
            #expect(queried.contains(needed), "the dashboard does not query \(needed): \(queried.sorted())")
        }

        let port = try freeLoopbackPort()
        let lab = try Lab.start(
            sharemailConfig: "metrics = \"127.0.0.1:\(port)\"\n" + SharemailConfig.standard(state: nil),
            under: Lab.runsRoot, sharemailPrivateState: true)
        defer { lab.stop(keepDirectory: ProcessInfo.processInfo.environment["E2E_KEEP"] != nil) }
        // Mail both ways and a reload, so labelled series exist whatever the exporter does with
        // counters never incremented.
        let inbound = try lab.sendAndDeliver(
            as: .internet, from: "customer@customer.test", to: ["sales@example.com"],
            message: message(["From: customer@customer.test", "To: sales@example.com", "Subject: d1"]))
        let outbound = try lab.sendAndDeliver(
            as: .staff(login: "zhangsan"), from: "zhangsan@example.com", to: ["customer@customer.test"],
            message: message(["From: zhangsan@example.com", "To: customer@customer.test", "Subject: d2"]))
        #expect(inbound.accepted && outbound.accepted, "\(inbound)\n\(outbound)\n\(lab.diagnostics)")
        try #require(lab.sharemail).reload()

        let text = try Self.scrape(port: port)
        let served = Self.servedMetrics(text)
        #expect(served.contains("sharemail_messages_total"), "not a sharemail /metrics response:\n\(text)")
        let missing = queried.subtracting(served)
        #expect(missing.isEmpty, "the dashboard queries \(missing.sorted()), which /metrics does not serve:\n\(text)")
    }

    /// The `sharemail_*` names in every query string of the dashboard (panel targets'
    /// `expr`, template variables' `query` and `definition`).
    static func queriedMetrics() throws -> Set<String> {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dashboard)))
        var queries: [String] = []
        func walk(_ value: Any) {
            if let object = value as? [String: Any] {
                for (key, child) in object {
                    if ["expr", "query", "definition"].contains(key), let text = child as? String { queries.append(text) }
                    walk(child)
                }
            } else if let array = value as? [Any] {
                array.forEach(walk)
            }
        }
        walk(json)
        let pattern = try NSRegularExpression(pattern: "sharemail_[a-z_]+")
        var names = Set<String>()
        for query in queries {
            for match in pattern.matches(in: query, range: NSRange(query.startIndex..., in: query)) {
                names.insert(String(query[Range(match.range, in: query)!]))
            }
        }
        return names
    }

    /// Sample names of Prometheus text (`name{labels} value` and `name value` lines).
    static func servedMetrics(_ text: String) -> Set<String> {
        Set(
            text.split(separator: "\n").filter { !$0.hasPrefix("#") }.compactMap { line in
                line.split(whereSeparator: { $0 == "{" || $0 == " " }).first.map(String.init)
            })
    }

    /// GET /metrics on 127.0.0.1:`port` (HTTP/1.1, the server closes after the response).
    static func scrape(port: UInt16) throws -> String {
        let text = try httpGet(port: port, path: "/metrics")
        guard text.hasPrefix("HTTP/1.1 200"), let body = text.range(of: "\r\n\r\n") else {
            throw LabError("GET /metrics: \(text.prefix(500))")
        }
        return String(text[body.upperBound...])
    }
}
