import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Who is talking to Postfix. XCLIENT replaces the real client (127.0.0.1), so relay rules and
/// the milter see these addresses; documentation ranges only ever appear here.
package enum SMTPIdentity: Sendable {
    case internet  // a stranger: no login
    case staff(login: String)  // authenticated user; `permit_sasl_authenticated` lets it relay

    package var xclient: String {
        switch self {
        case .internet: "ADDR=198.51.100.7 NAME=[UNAVAILABLE]"
        case .staff(let login): "ADDR=192.0.2.10 LOGIN=\(login)"
        }
    }

    package var helo: String {
        switch self {
        case .internet: "mail.customer.test"
        case .staff: "staff-pc.example.com"
        }
    }
}

/// What Postfix answered to one SMTP transaction.
package struct SMTPOutcome: Sendable, CustomStringConvertible {
    package var mail: SMTPReply?
    package var rcpt: [SMTPReply] = []
    package var data: SMTPReply?  // nil when no recipient was accepted (DATA never sent)
    package var transcript: [String] = []

    /// The first reply that was not positive (e.g. the 451 of a dead milter), if any.
    package var firstRefusal: SMTPReply? { ([mail].compactMap { $0 } + rcpt + [data].compactMap { $0 }).first { !$0.isPositive } }
    package var accepted: Bool { data?.code == 250 }
    package var description: String { transcript.joined(separator: "\n") }
}

/// One Postfix, one smtp-sink and (optionally) one sharemail in a fresh run directory.
///
/// The end-to-end suites share one per suite (their `.e2eEnvironment` trait starts it before
/// the first test and stops it after the last); `sharemail-sandbox` starts one for its cases.
package final class Lab: Sendable {
    package let directory: String
    package let postfix: PostfixInstance
    package let sink: Sink
    package let sharemail: SharemailDaemon?  // nil for the Postfix-only self-tests
    package var maildirs: Maildirs { Maildirs(base: postfix.mailBase) }

    private init(directory: String, postfix: PostfixInstance, sink: Sink, sharemail: SharemailDaemon?) {
        self.directory = directory
        self.postfix = postfix
        self.sink = sink
        self.sharemail = sharemail
    }

    /// Starts everything in a new directory under `root`; on any failure stops what already
    /// runs and throws.
    /// `sharemailUser`, `sharemailOpenFiles`, `sharemailPrivateState`: see `SharemailDaemon.init`.
    package static func start(
        sharemailConfig: String?, under root: String,
        sharemailUser: String? = nil, sharemailOpenFiles: Int? = nil,
        sharemailPrivateState: Bool = false
    ) throws -> Lab {
        guard getuid() == 0 else {
            throw LabError("must run as root: this starts a private Postfix instance")
        }
        let directory = try RunDirectory.create(under: root)
        var sink: Sink?
        var postfix: PostfixInstance?
        var sharemail: SharemailDaemon?
        do {
            // Before Postfix: a missing binary should fail fast, not after Postfix started.
            if let config = sharemailConfig {
                sharemail = try SharemailDaemon(
                    directory: directory, config: config,
                    user: sharemailUser, openFiles: sharemailOpenFiles,
                    privateState: sharemailPrivateState)
            }
            sink = try Sink(directory: directory, port: try freeLoopbackPort())
            postfix = try PostfixInstance(
                directory: directory, smtpPort: try freeLoopbackPort(), sinkPort: sink!.port,
                milterSocket: sharemail?.socketPath)
            try trace("sharemail start") { try sharemail?.start() }
            try trace("postfix start") { try postfix!.start() }
            return Lab(directory: directory, postfix: postfix!, sink: sink!, sharemail: sharemail)
        } catch {
            sharemail?.stop()
            postfix?.stop()
            sink?.stop()
            RunDirectory.remove(directory)
            throw error as? LabError ?? LabError("\(error)")
        }
    }

    /// Stops the daemons; `keepDirectory` leaves maillog, Maildirs, sink dumps and
    /// sharemail.log for a closer look (the next run under the same root removes them as stale).
    package func stop(keepDirectory: Bool = false) {
        trace("sharemail stop") { sharemail?.stop() }
        trace("postfix stop") { postfix.stop() }
        trace("sink stop") { sink.stop() }
        if !keepDirectory { RunDirectory.remove(directory) }
    }

    // MARK: Per-test state

    private let offsets = Offsets((0, 0))

    /// Called by each test (through its suite's init): empties queue, Maildirs and sink, and
    /// remembers where the logs are so failure messages show this test's lines only.
    package func beginTest() throws {
        if (try? postfix.waitForEmptyQueue(timeout: .seconds(5))) == nil { postfix.deleteAllQueued() }
        // A test that stopped the milter on purpose and then failed must not take the rest along.
        if let sharemail, !sharemail.isRunning { try sharemail.start() }
        maildirs.clear()
        sink.clear()
        markLogs()
    }

    /// Remembers where the logs end now, for `diagnostics`.
    package func markLogs() {
        let now = (maillog: postfix.maillogOffset(), sharemailLog: sharemail?.logOffset() ?? 0)
        offsets.withLock { $0 = now }
    }

    /// The maillog and sharemail's output since `markLogs()`: attach to every failed expectation.
    package var diagnostics: String {
        let (maillog, sharemailLog) = offsets.withLock { $0 }
        var text = "--- Postfix maillog (this test) ---\n" + postfix.maillog(since: maillog)
        if let sharemail {
            text += "--- sharemail output (this test) ---\n" + sharemail.log(since: sharemailLog)
        }
        return text
    }

    // MARK: Sending

    /// One SMTP transaction as `identity`: EHLO, XCLIENT, EHLO, MAIL, RCPT…, DATA if any RCPT
    /// was accepted, QUIT. Never throws for refusals: they are in the outcome.
    package func send(
        as identity: SMTPIdentity, from sender: String, to recipients: [String], message: [UInt8]
    ) throws -> SMTPOutcome {
        let client = try SMTPClient(port: postfix.smtpPort)
        var outcome = SMTPOutcome()
        defer { client.quit() }
        do {
            try require(client.greeting(), 220, client)
            try require(client.ehlo("harness.test"), 250, client)
            try require(client.xclient(identity.xclient), 220, client)
            try require(client.ehlo(identity.helo), 250, client)
            let mail = try client.mailFrom(sender)
            outcome.mail = mail
            if mail.isPositive {
                outcome.rcpt = try recipients.map { try client.rcptTo($0) }
                if outcome.rcpt.contains(where: \.isPositive) { outcome.data = try client.data(message) }
            }
        } catch {
            throw LabError("\(error)\n\(client.transcript.joined(separator: "\n"))\n\(diagnostics)")
        }
        outcome.transcript = client.transcript
        return outcome
    }

    /// Sends, then waits until Postfix has delivered (or bounced) everything.
    @discardableResult
    package func sendAndDeliver(
        as identity: SMTPIdentity, from sender: String, to recipients: [String], message: [UInt8]
    ) throws -> SMTPOutcome {
        let outcome = try send(as: identity, from: sender, to: recipients, message: message)
        try waitForDelivery()
        return outcome
    }

    package func waitForDelivery() throws {
        do { try postfix.waitForEmptyQueue() } catch { throw LabError("\(error)\n\(diagnostics)") }
    }

    private func require(_ reply: SMTPReply, _ code: Int, _ client: SMTPClient) throws {
        guard reply.code == code else { throw LabError("expected \(code), got \(reply)") }
    }
}

/// E2E_TRACE=1 prints how long the slow steps (daemon start and stop) take.
package func trace<T>(_ step: String, _ body: () throws -> T) rethrows -> T {
    guard ProcessInfo.processInfo.environment["E2E_TRACE"] != nil else { return try body() }
    let start = ContinuousClock.now
    defer { print("[e2e] \(step): \(ContinuousClock.now - start)") }
    return try body()
}

/// The per-test log offsets (maillog, sharemail log); set by `markLogs()`.
private typealias Offsets = Mutex<(maillog: UInt64, sharemailLog: UInt64)>

// MARK: Messages

/// A tag unique to one run, for Subjects and Message-IDs, so copies are recognisable.
package func uniqueTag() -> String { "e2e-" + String(UInt64.random(in: 0...UInt64.max), radix: 36) }

/// A message from header lines and a body, with CRLF line ends.
package func message(_ headers: [String], body: String = "Hello from the sharemail end-to-end tests.") -> [UInt8] {
    Array((headers.joined(separator: "\r\n") + "\r\n\r\n" + body + "\r\n").utf8)
}

/// A message whose header section is given as raw bytes (8-bit garbage and the like).
package func rawMessage(_ header: [UInt8], body: String = "Hello.") -> [UInt8] {
    header + Array("\r\n\r\n\(body)\r\n".utf8)
}
