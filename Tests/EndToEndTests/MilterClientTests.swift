import Foundation
import PostfixLab
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The real `sharemail serve` driven by an MTA-side client this project did not write:
/// OpenDKIM's miltertest (Debian package `miltertest`), running the Lua scripts in
/// miltertest/. What miltertest cannot send (steps the milter negotiated away, QUIT_NC,
/// garbage) goes through `MilterWire`, byte by byte. No Postfix: only the daemon, on a unix
/// socket, with the E2E suites' configuration.
@Suite("Milter client: miltertest and raw bytes against sharemail serve", .serialized)
struct MilterClientTests {
    // MARK: Messages on one connection

    @Test("Internet, aborted, staff, refused and Internet messages on one connection are each decided on their own facts")
    func rolesOnOneConnection() throws {
        let lab = try MilterClientLab()
        defer { lab.stop() }
        let run = try lab.miltertest("roles.lua")
        try run.expectSuccess("roles: done", lab)

        // The staff message: miltertest saw the envelope sender change (SMFIR_CHGFROM, 'e') of
        // exactly "<sales@example.com>" + NUL (20 bytes); the Internet ones had none.
        let staffEOM = run.section("MTROLE3")
        #expect(staffEOM.contains("cmd e, len 20"), "no CHGFROM <sales@example.com> at MTROLE3's end of message:\n\(staffEOM)")
        for internet in ["MTROLE1", "MTROLE5"] {
            #expect(!run.section(internet).contains("cmd e,"), "\(internet) got its envelope sender changed:\n\(run.output)")
        }
        // The daemon's own account of each decision agrees.
        let log = lab.daemon.log(since: 0)
        let staff = try #require(log.line(containing: "MTROLE3: decision"), "no decision for MTROLE3:\n\(log)")
        #expect(
            staff.contains("role=staff") && staff.contains("new_from=sales@example.com") && staff.contains("login=zhangsan"),
            "\(staff)")
        #expect(!staff.contains("lisi"), "the aborted message leaked into MTROLE3: \(staff)")
        for internet in ["MTROLE1", "MTROLE5"] {
            let line = try #require(log.line(containing: "\(internet): decision"), "no decision for \(internet):\n\(log)")
            #expect(line.contains("role=internet") && !line.contains("new_from") && !line.contains("login="), "\(line)")
        }
        #expect(log.line(containing: "MTROLE2: decision") == nil, "the aborted message was decided:\n\(log)")
        let refused = try #require(log.line(containing: "recipient refused"), "no refusal logged:\n\(log)")
        #expect(refused.contains("550 5.7.1") && refused.contains("zhangsan@example.com"), "\(refused)")
        #expect(
            !refused.contains("login=zhangsan") && !refused.contains("login=lisi"),
            "the refused Internet message carried an earlier message's login: \(refused)")
        try lab.expectRunning()
    }

    // MARK: Dropped connections and garbage

    @Test("A connection dropped mid-message leaves the daemon serving the next one")
    func droppedMidMessage() throws {
        let lab = try MilterClientLab()
        defer { lab.stop() }
        try lab.miltertest("dropped.lua").expectSuccess("dropped: done", lab)
        let log = lab.daemon.log(since: 0)
        for cut in ["MTDROP1", "MTDROP2"] {
            #expect(log.line(containing: "\(cut): decision") == nil, "a message cut off was decided:\n\(log)")
        }
        let line = try #require(log.line(containing: "MTDROP3: decision"), "\(log)")
        #expect(line.contains("role=internet") && line.contains("manager@example.com"), "\(line)")
        try lab.expectRunning()
    }

    struct Garbage: Sendable, CustomTestStringConvertible {
        let testDescription: String
        /// Sent after a good negotiation and CONNECT rather than as the first packet.
        var afterNegotiation = false
        /// libmilter sees at once that the packet is bad and drops the connection; otherwise
        /// (a packet cut short) it waits for the rest until we hang up.
        var dropped = true
        let bytes: @Sendable () -> [UInt8]
    }

    static let garbage: [Garbage] = [
        Garbage(testDescription: "a length prefix of 2^31") {
            [0x80, 0, 0, 0, Character("O").asciiValue!] + [UInt8](repeating: 0x41, count: 64)
        },
        Garbage(testDescription: "a length prefix of 2^32-1 after negotiation", afterNegotiation: true) {
            [0xFF, 0xFF, 0xFF, 0xFF, Character("M").asciiValue!]
        },
        Garbage(testDescription: "a length of 0") { [0, 0, 0, 0, Character("O").asciiValue!] },
        Garbage(testDescription: "64 KiB of random bytes after a length prefix of 2^31 + 5") {
            var generator = SystemRandomNumberGenerator()
            return [0x80, 0, 0, 5] + (0..<65_536).map { _ in UInt8.random(in: 0...255, using: &generator) }
        },
        Garbage(testDescription: "an unknown command byte after negotiation", afterNegotiation: true) {
            [0, 0, 0, 3, Character("Z").asciiValue!, 1, 2]
        },
        Garbage(testDescription: "a MAIL without its NUL, then a header of 1 MiB after negotiation", afterNegotiation: true) {
            let mail: [UInt8] = [0, 0, 0, 6, Character("M").asciiValue!] + Array("<a@b>".utf8)
            let value = [UInt8](repeating: 0x78, count: 1 << 20)
            let length = UInt32(value.count + 4).bigEndian
            return mail + withUnsafeBytes(of: length) { Array($0) } + [Character("L").asciiValue!, 0x58, 0] + value + [0]
        },
        Garbage(testDescription: "a truncated packet (says 200 bytes, sends 10, hangs up)", dropped: false) {
            [0, 0, 0, 200, Character("O").asciiValue!] + [UInt8](repeating: 0, count: 10)
        },
        Garbage(testDescription: "a truncated MAIL after negotiation, then a hang-up", afterNegotiation: true, dropped: false) {
            [0, 0, 0, 100, Character("M").asciiValue!] + Array("<evil@customer.test".utf8)
        },
        Garbage(testDescription: "random bytes (any length prefix), then a hang-up", dropped: false) {
            var generator = SystemRandomNumberGenerator()
            return (0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) }
        },
    ]

    @Test("Garbage and oversized packets: the daemon survives and answers the next good connection", arguments: garbage)
    func garbageIn(_ garbage: Garbage) throws {
        let lab = try MilterClientLab()
        defer { lab.stop() }
        do {
            let wire = try MilterWire(socketPath: lab.daemon.socketPath, timeoutSeconds: 10)
            if garbage.afterNegotiation {
                try wire.negotiate()
                try wire.connect(ip: "192.0.2.77", port: 4711, hostname: "client.customer.test")
            }
            wire.writeRaw(garbage.bytes())
            let closed = wire.closedByMilter(within: 3)
            if garbage.dropped {
                #expect(closed, "libmilter kept a connection that sent \(garbage.testDescription)")
            }
        }  // hangs up
        try lab.expectRunning()
        try lab.miltertest("good.lua", ["queue_id": "MTAFTER"]).expectSuccess("good: done", lab)
        let log = lab.daemon.log(since: 0)
        let line = try #require(log.line(containing: "MTAFTER: decision"), "\(log)")
        #expect(line.contains("role=internet"), "\(line)")
        try lab.expectRunning()
    }

    // MARK: Load

    @Test("200 concurrent connections (4 miltertest processes × 50 open connections, steps interleaved) within 60 s")
    func twoHundredConnections() throws {
        let lab = try MilterClientLab()
        defer { lab.stop() }
        let results = Mutex<[Int: Result<MilterClientLab.Run, any Error>]>([:])
        let started = ContinuousClock.now
        inParallel(4) { process in
            let result = Result { try lab.miltertest("concurrent.lua", ["count": "50", "tag": "MTC\(process)x"], timeout: .seconds(60)) }
            results.withLock { $0[process] = result }
        }
        let elapsed = ContinuousClock.now - started
        for process in 0..<4 {
            let run = try #require(results.withLock { $0[process] }).get()
            try run.expectSuccess("concurrent: 50 done", lab)
        }
        #expect(elapsed < .seconds(60), "200 sessions took \(elapsed)")
        let log = lab.daemon.log(since: 0)
        let decisions = log.split(separator: "\n").filter { $0.contains(": decision") && $0.contains("MTC") }
        #expect(decisions.count == 200, "expected 200 decisions, got \(decisions.count)\n\(lab.daemon.logTail())")
        for process in 0..<4 {
            for i in 1...50 {
                let id = "MTC\(process)x" + (i % 2 == 0 ? "S\(i)" : "I\(i)")
                guard let line = log.line(containing: "\(id): decision") else {
                    Issue.record("no decision for \(id)")
                    continue
                }
                // Each decided on its own facts: staff sessions as staff, the others as Internet.
                #expect(line.contains(i % 2 == 0 ? "role=staff" : "role=internet"), "\(line)")
            }
        }
        try lab.expectRunning()
    }

    // MARK: Steps negotiated away

    @Test("HELO, DATA, EOH, BODY and UNKNOWN sent although negotiated away neither crash nor confuse the next message")
    func stepsNegotiatedAway() throws {
        let lab = try MilterClientLab()
        defer { lab.stop() }
        let wire = try MilterWire(socketPath: lab.daemon.socketPath)
        try wire.negotiate()
        let skipped: [(UInt32, String)] = [
            (MilterWire.noHelo, "HELO"), (MilterWire.noData, "DATA"),
            (MilterWire.noEOH, "EOH"), (MilterWire.noBody, "BODY"),
            (MilterWire.noUnknown, "UNKNOWN"),
        ]
        for (flag, name) in skipped {
            #expect(wire.protocolFlags & flag != 0, "sharemail no longer skips \(name): this test needs another step")
        }
        try wire.connect(ip: "192.0.2.77", port: 4711, hostname: "client.customer.test")
        // Each out-of-place step may get a reply or none (libmilter answers a step it was told
        // to skip as it answers any other); either way the next steps must stay in step.
        func stray(_ command: Character, _ data: [UInt8], _ name: String) throws {
            try wire.send(command, data)
            if let reply = try wire.pendingReply(within: 500, name) {
                #expect(reply.code == "c", "\(name) answered with \(reply)")
            }
        }
        try stray("H", MilterWire.strings(["client.customer.test"]), "HELO")
        try stray("U", MilterWire.strings(["XYZZY"]), "UNKNOWN")
        try wire.mail("customer@customer.test", queueID: "MTSTRAY1")
        #expect(try wire.rcpt("sales@example.com")?.code == "c")
        try stray("T", [], "DATA")
        try wire.header("From", "customer@customer.test")
        try wire.header("To", "sales@example.com")
        try stray("N", [], "EOH")
        try stray("B", Array("Hello.\r\n".utf8), "BODY")
        let first = try wire.endOfMessage(queueID: "MTSTRAY1")
        #expect(first.final.code == "c", "\(first.final)")
        #expect(first.changes.contains { $0.code == "+" && $0.strings.first == "<manager@example.com>" }, "\(first.changes)")

        // The next message on the same connection: a staff one, decided as such.
        try wire.mail("zhangsan@example.com", queueID: "MTSTRAY2", login: "zhangsan")
        #expect(try wire.rcpt("customer@customer.test")?.code == "c")
        try stray("T", [], "DATA")
        try wire.header("From", "Zhangsan <zhangsan@example.com>")
        try stray("B", Array("Hi.\r\n".utf8), "BODY")
        let second = try wire.endOfMessage(queueID: "MTSTRAY2")
        #expect(second.final.code == "c", "\(second.final)")
        #expect(second.changes.contains { $0.code == "e" && $0.strings.first == "<sales@example.com>" }, "\(second.changes)")
        // SMFIR_CHGHEADER: index, then name and value.
        #expect(
            second.changes.contains {
                $0.code == "m"
                    && MilterWire.Packet(command: 0, data: Array($0.data.dropFirst(4))).strings
                        == ["From", "Zhangsan <sales@example.com>"]
            }, "From not changed: \(second.changes)")
        try wire.send("Q")
        try lab.expectRunning()
    }

    // MARK: QUIT_NC

    @Test("QUIT_NC, then CONNECT with no new negotiation on the same connection (as sendmail does): the new session is filtered")
    func quitNewConnection() throws {
        let lab = try MilterClientLab()
        defer { lab.stop() }
        let wire = try MilterWire(socketPath: lab.daemon.socketPath)
        try wire.negotiate()
        for round in 1...3 {
            try wire.connect(ip: "192.0.2.77", port: 4711, hostname: "client.customer.test")
            // Internet mail to a staff address: refused at RCPT with 550, not tempfailed.
            try wire.mail("customer@customer.test", queueID: "MTQNC\(round)A")
            let refused = try #require(try wire.rcpt("zhangsan@example.com"), "RCPT negotiated without reply")
            #expect(
                refused.code == "y" && refused.strings.first?.hasPrefix("550 5.7.1") == true,
                "session \(round): RCPT answered \(refused)\n\(lab.daemon.logTail())")
            try wire.send("A")
            // Internet mail to sales@: the manager is added.
            try wire.mail("customer@customer.test", queueID: "MTQNC\(round)B")
            #expect(try wire.rcpt("sales@example.com")?.code == "c")
            try wire.header("From", "customer@customer.test")
            let outcome = try wire.endOfMessage(queueID: "MTQNC\(round)B")
            #expect(outcome.final.code == "c", "session \(round): end of message answered \(outcome.final)")
            #expect(
                outcome.changes.contains { $0.code == "+" && $0.strings.first == "<manager@example.com>" },
                "session \(round): \(outcome.changes)")
            try wire.send("K")  // QUIT_NC: this session is over, another follows on this socket
        }
        try wire.send("Q")
        #expect(lab.daemon.log(since: 0).line(containing: "MTQNC3B: decision") != nil, "\(lab.daemon.logTail())")
        try lab.expectRunning()
    }

    @Test("After MTAs with different protocol flags negotiated, a session after QUIT_NC is deferred at end of message, promptly")
    func quitNewConnectionMixedFlags() throws {
        let lab = try MilterClientLab()
        defer { lab.stop() }
        let postfixLike = try MilterWire(socketPath: lab.daemon.socketPath)
        try postfixLike.negotiate()
        // An older MTA that cannot skip HELO, DATA or unknown commands: the milter agrees
        // other flags with it. (Missing "no reply" options would not do: libmilter offers
        // those to the milter anyway and answers in its place.)
        let older = try MilterWire(socketPath: lab.daemon.socketPath)
        try older.negotiate(
            protocolOptions: MilterWire.allProtocolOptions
                & ~(MilterWire.noHelo | MilterWire.noData | MilterWire.noUnknown))
        #expect(older.protocolFlags != postfixLike.protocolFlags)

        let wire = try MilterWire(socketPath: lab.daemon.socketPath, timeoutSeconds: 5)
        try wire.negotiate()
        try wire.connect(ip: "192.0.2.77", port: 4711, hostname: "client.customer.test")
        try wire.mail("customer@customer.test", queueID: "MTMIX1")
        _ = try wire.rcpt("sales@example.com")
        try wire.header("From", "customer@customer.test")
        #expect(try wire.endOfMessage(queueID: "MTMIX1").final.code == "c")
        try wire.send("K")
        // Which flags this socket agreed is no longer known: nothing may hang, nothing may pass.
        let started = ContinuousClock.now
        try wire.connect(ip: "192.0.2.77", port: 4711, hostname: "client.customer.test")
        try wire.mail("customer@customer.test", queueID: "MTMIX2")
        _ = try wire.rcpt("sales@example.com")
        try wire.header("From", "customer@customer.test")
        let deferred = try wire.endOfMessage(queueID: "MTMIX2")
        #expect(deferred.final.code == "t" && deferred.changes.isEmpty, "\(deferred)")
        #expect(ContinuousClock.now - started < .seconds(3))
        let log = lab.daemon.log(since: 0)
        #expect(log.contains("MTAs with different protocol flags share this socket"), "\(log)")
        #expect(log.line(containing: "MTMIX2: decision") == nil, "\(log)")
        try lab.expectRunning()
    }

    // MARK: Log forgery

    @Test("CR, LF and escape sequences in MAIL FROM and {auth_authen} are logged escaped, never as a line of their own")
    func noForgedLogLine() throws {
        let lab = try MilterClientLab()
        defer { lab.stop() }
        try lab.miltertest("forged-log.lua").expectSuccess("forged-log: done", lab)
        let log = lab.daemon.log(since: 0)
        // The values were logged (so the checks below can fail), escaped.
        #expect(log.contains(#"\n2026-01-01T00:00:00+0000 info sharemail: FORGED-LINE"#), "sender not logged escaped:\n\(log)")
        #expect(log.contains(#"zhangsan\r\nFORGED-LOGIN \x1b[2J"#), "login not logged escaped:\n\(log)")
        for line in log.split(separator: "\n", omittingEmptySubsequences: false) {
            #expect(!line.hasPrefix("2026-01-01T00:00:00+0000") && !line.hasPrefix("FORGED-LOGIN"), "forged log line: \(line)")
        }
        #expect(!log.utf8.contains(0x1B) && !log.utf8.contains(0x0D), "a raw ESC or CR reached the log:\n\(log.debugDescription)")
        try lab.expectRunning()
    }
}

/// One `sharemail serve` on a unix socket in its own run directory, with the E2E configuration,
/// and miltertest to talk to it.
struct MilterClientLab: Sendable {
    static let miltertest = "/usr/bin/miltertest"
    static let scripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("miltertest").path

    let directory: String
    let daemon: SharemailDaemon

    init() throws {
        guard FileManager.default.isExecutableFile(atPath: Self.miltertest) else {
            throw LabError("\(Self.miltertest) not found: install the Debian package miltertest (scripts/install-deps)")
        }
        directory = try RunDirectory.create(under: Lab.runsRoot)
        do {
            daemon = try SharemailDaemon(directory: directory, config: SharemailConfig.standard())
            try trace("sharemail start") { try daemon.start() }
        } catch {
            RunDirectory.remove(directory)
            throw error
        }
    }

    func stop() {
        trace("sharemail stop") { daemon.stop() }
        if ProcessInfo.processInfo.environment["E2E_KEEP"] == nil { RunDirectory.remove(directory) }
    }

    /// The daemon still runs (has not crashed or exited).
    func expectRunning(sourceLocation: SourceLocation = #_sourceLocation) throws {
        let status = try daemon.waitForExit(timeout: .zero)
        #expect(status == nil, "sharemail exited with status \(status ?? -1):\n\(daemon.logTail())", sourceLocation: sourceLocation)
    }

    struct Run: Sendable {
        let result: Command.Result
        var output: String { result.output }

        /// miltertest's verbose output between the script's "== eom ID begin" and "end" echoes.
        func section(_ queueID: String) -> String {
            guard let start = output.range(of: "== eom \(queueID) begin"),
                let end = output.range(of: "== eom \(queueID) end", range: start.upperBound..<output.endIndex)
            else { return "" }
            return String(output[start.upperBound..<end.lowerBound])
        }

        func expectSuccess(_ marker: String, _ lab: MilterClientLab, sourceLocation: SourceLocation = #_sourceLocation) throws {
            #expect(
                result.succeeded && output.contains(marker),
                "\(result)\n--- sharemail log ---\n\(lab.daemon.logTail(lines: 60))", sourceLocation: sourceLocation)
        }
    }

    /// Runs miltertest -vv on `script` against the daemon; `defines` become Lua globals.
    func miltertest(_ script: String, _ defines: [String: String] = [:], timeout: Duration = .seconds(60)) throws -> Run {
        var argv = [
            Self.miltertest, "-vv", "-s", Self.scripts + "/" + script,
            "-D", "socket=unix:" + daemon.socketPath, "-D", "dir=" + Self.scripts,
        ]
        for (name, value) in defines.sorted(by: { $0.key < $1.key }) { argv += ["-D", "\(name)=\(value)"] }
        return Run(result: try Command.run(argv, timeout: timeout))
    }
}

extension String {
    /// The first line that contains `text`.
    func line(containing text: String) -> String? {
        split(separator: "\n").first { $0.contains(text) }.map(String.init)
    }
}
