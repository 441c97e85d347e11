// Header parsing and matching timers: `swift run -c release header-benchmark`.
//
// Plain wall-clock timers around the real engine path (configuration loaded
// from TOML, `PolicyEngine.decide` on an Internet message to the unified
// address). Each case is warmed up, then timed once per call; the table shows
// median and p99 against the target. It only prints: a FAIL here never fails a
// build or a test (machines differ), it is a figure to look at.
//
//   header-benchmark [--quick]     (--quick: fewer samples, for a smoke run)
import Foundation
import MailHeaders
import ShareMail

// MARK: - Timing

let quick = CommandLine.arguments.contains("--quick")

/// Results must be used, or the optimizer may drop the work being timed.
nonisolated(unsafe) var sink = 0
@inline(never) func consume(_ value: Int) { sink &+= value }

func now() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
}

struct Figures {
    var samples: Int
    var median: Double  // ns
    var p99: Double  // ns
}

/// Warm up for `warmup` seconds, then time single calls until `samples` calls or
/// `budget` seconds, whichever comes first (at least 50 calls).
func measure(samples: Int, warmup: Double = 0.3, budget: Double = 4, _ body: () -> Int) -> Figures {
    let scale = quick ? 0.1 : 1.0
    let warmEnd = now() + UInt64(warmup * scale * 1e9)
    repeat { consume(body()) } while now() < warmEnd
    var times: [UInt64] = []
    let wanted = max(50, Int(Double(samples) * scale))
    times.reserveCapacity(wanted)
    let end = now() + UInt64(budget * scale * 1e9)
    while times.count < wanted && (times.count < 50 || now() < end) {
        let start = now()
        let result = body()
        times.append(now() - start)
        consume(result)
    }
    times.sort()
    func percentile(_ p: Double) -> Double {
        Double(times[min(times.count - 1, Int((Double(times.count) * p).rounded(.up)) - 1)])
    }
    return Figures(samples: times.count, median: percentile(0.5), p99: percentile(0.99))
}

func duration(_ ns: Double) -> String {
    if ns >= 1_000_000 { return String(format: "%.2f ms", ns / 1_000_000) }
    if ns >= 1_000 { return String(format: "%.2f µs", ns / 1_000) }
    return String(format: "%.0f ns", ns)
}

// MARK: - Configuration and messages

/// A configuration with `count` staff behind sales@example.com; Zhangsan and Lisi
/// are always among them (the others are "Staff 00003" … with their own address).
func configuration(staff count: Int) -> String {
    var toml = """
        trusted_networks = ["10.1.0.0/16"]

        [[mailbox]]
        address = "sales@example.com"
        manager = "manager@example.com"
        forward_unnamed = true

          [[mailbox.staff]]
          name = "Zhangsan"
          aliases = ["Zhang San", "张三"]
          address = "zhangsan@example.com"

          [[mailbox.staff]]
          name = "Lisi"
          aliases = ["李四"]
          address = "lisi@example.com"

        """
    for i in 2..<max(2, count) {
        let n = String(format: "%05d", i)
        toml += """

              [[mailbox.staff]]
              name = "Staff \(n)"
              address = "staff\(n)@example.com"

            """
    }
    return toml
}

func engine(staff count: Int) -> (PolicyEngine, Double) {
    let start = now()
    let loaded: Configuration
    do {
        loaded = try ConfigurationLoader.load(text: configuration(staff: count), file: "benchmark-\(count).toml").0
    } catch {
        fatalError("benchmark configuration with \(count) staff does not load: \(error)")
    }
    let engine = PolicyEngine(configuration: loaded)
    return (engine, Double(now() - start))
}

let internet = Submission(channel: .smtp, clientAddress: IPAddress("198.51.100.7"))

/// The header block of a typical customer reply written to "Zhangsan" <sales@…>.
let typicalHeaders: [(String, String)] = [
    ("From", "\"Wang Customer\" <buyer@customer.example>"),
    ("To", "\"Zhangsan\" <sales@example.com>"),
    ("Cc", "=?UTF-8?B?546L5LqU?= <wang5@customer.example>, \"Purchasing, Customer\" <purchasing@customer.example>,\n boss@customer.example"),
    ("Reply-To", "buyer@customer.example"),
    ("Subject", "Re: =?UTF-8?B?5YWz5LqO5oql5Lu35Y2V55qE6Zeu6aKY?="),
]

func facts(_ headers: [(String, String)]) -> MessageFacts {
    MessageFacts(
        submission: internet, sender: "<buyer@customer.example>", recipients: ["<sales@example.com>"],
        headers: headers.map { Header(name: $0.0, value: $0.1) }, uniqueToken: "benchmark")
}

/// A To header with `count` addresses (mixed forms), "Zhangsan" <sales@…> last.
func bigTo(_ count: Int) -> String {
    var parts: [String] = []
    parts.reserveCapacity(count)
    for i in 0..<(count - 1) {
        switch i % 4 {
        case 0: parts.append("\"Customer \(i)\" <user\(i)@customer\(i % 50).example>")
        case 1: parts.append("=?UTF-8?B?5a6i5oi3?= \(i) <user\(i)@customer\(i % 50).example>")
        case 2: parts.append("user\(i)@customer\(i % 50).example (Customer \(i))")
        default: parts.append("user\(i)@customer\(i % 50).example")
        }
    }
    parts.append("\"Zhangsan\" <sales@example.com>")
    return HeaderEncoder.fold(name: "To", value: parts.joined(separator: ", "))
}

// MARK: - Machine

func machine() -> [String] {
    let cpu =
        (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
        .split(separator: "\n").first { $0.hasPrefix("model name") }?
        .split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces) ?? "unknown"
    var swift = "unknown"
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["swift", "--version"]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    if (try? process.run()) != nil {
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        if let line = out.split(separator: "\n").first(where: { $0.contains("Swift version") }) { swift = String(line) }
    }
    var build = "release"
    #if DEBUG
        build = "DEBUG (figures are meaningless: use swift run -c release header-benchmark)"
    #endif
    return [
        "cpu:   \(cpu)",
        "nproc: \(ProcessInfo.processInfo.activeProcessorCount)",
        "swift: \(swift)",
        "build: \(build)\(quick ? ", --quick" : "")",
    ]
}

// MARK: - Cases

struct Row {
    var name: String
    var figures: Figures
    var target: String
    var verdict: String
}

print("header-benchmark: MailHeaders parsing and PolicyEngine matching")
for line in machine() { print("  " + line) }
print("")

let (small, smallLoad) = engine(staff: 10)
let (large, largeLoad) = engine(staff: 10_000)
let decoder = HeaderDecoder()
let typical = facts(typicalHeaders)
let big = facts(typicalHeaders.map { $0.0 == "To" ? ("To", bigTo(3_000)) : $0 })

// The scenario must do what it claims, or the figures mean nothing.
for (label, engine, message) in [("10 staff", small, typical), ("10,000 staff", large, typical), ("3,000 To", small, big)] {
    let decision = engine.decide(message)
    let added = Set(decision.addRecipients.map(\.value))
    guard added == ["manager@example.com", "zhangsan@example.com"] else {
        fatalError("benchmark scenario \(label): expected manager + Zhangsan, got \(added.sorted()); reasons: \(decision.reasons)")
    }
}
let bigCount = decoder.addressList(decoder.text(fromRaw: big.headers[1].raw)).mailboxes.count
guard bigCount == 3_000 else { fatalError("the big To header parses to \(bigCount) mailboxes, not 3,000") }

func verdict(_ f: Figures, under limit: Double) -> String { f.median < limit ? "PASS" : "FAIL" }

var rows: [Row] = []

let a = measure(samples: 50_000) { small.decide(typical).addRecipients.count }
rows.append(
    Row(
        name: "(a) decide: typical header block, 10 staff", figures: a, target: "< 20 µs",
        verdict: verdict(a, under: 20_000)))

// The module's own share: the same five headers parsed as the engine (To, Cc) and a
// client (From, Reply-To, Subject) would, without matching.
let headersOnly = measure(samples: 50_000) {
    var n = 0
    for header in typical.headers {
        let text = decoder.text(fromRaw: header.raw)
        if header.name == "Subject" {
            n += decoder.unstructured(text).utf8.count
        } else {
            n += decoder.addressList(text).mailboxes.count
        }
    }
    return n
}
rows.append(
    Row(
        name: "    MailHeaders only: parse the 5 headers", figures: headersOnly, target: "< 20 µs",
        verdict: verdict(headersOnly, under: 20_000)))

let b = measure(samples: 2_000, budget: 6) { small.decide(big).addRecipients.count }
rows.append(
    Row(
        name: "(b) decide: 3,000-address To header", figures: b, target: "< 5 ms",
        verdict: verdict(b, under: 5_000_000)))

let bigRaw = big.headers[1].raw
let bigParse = measure(samples: 2_000, budget: 6) {
    decoder.addressList(decoder.text(fromRaw: bigRaw)).mailboxes.count
}
rows.append(
    Row(
        name: "    MailHeaders only: parse the 3,000 To", figures: bigParse, target: "< 5 ms",
        verdict: verdict(bigParse, under: 5_000_000)))

let c10 = measure(samples: 50_000) { small.decide(typical).addRecipients.count }
let c10k = measure(samples: 50_000) { large.decide(typical).addRecipients.count }
let ratio = c10k.median / c10.median
rows.append(Row(name: "(c) decide: typical, 10 staff", figures: c10, target: "reference", verdict: ""))
rows.append(
    Row(
        name: "(c) decide: typical, 10,000 staff", figures: c10k, target: "≤ 1.5 × 10 staff",
        verdict: (ratio <= 1.5 ? "PASS" : "FAIL") + String(format: " (%.2f×)", ratio)))

// MARK: - Table

func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
}
func lpad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
}

let header = pad("case", 46) + lpad("samples", 8) + lpad("median", 11) + lpad("p99", 11) + "   " + pad("target", 18) + "result"
print(header)
print(String(repeating: "-", count: header.count + 8))
for row in rows {
    print(
        pad(row.name, 46) + lpad("\(row.figures.samples)", 8) + lpad(duration(row.figures.median), 11)
            + lpad(duration(row.figures.p99), 11) + "   " + pad(row.target, 18) + row.verdict)
}
print("")
print("configuration load (TOML → PolicyEngine): 10 staff \(duration(smallLoad)), 10,000 staff \(duration(largeLoad))")
print("verdicts compare medians; the benchmark never fails (exit status 0), it only reports.")
if sink == 42 { print("") }  // keeps `sink` observable
