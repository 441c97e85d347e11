import Foundation
import PostfixLab
import Testing

/// Issue 4's proof that `sharemail check` runs the very rules `serve` runs: each fixture goes
/// through `sharemail check --json` (the binary the lab's daemon runs, with the daemon's own
/// configuration file) and through the lab's Postfix, and the two verdicts must agree:
/// accept or reject (with the same SMTP and enhanced code), the mailboxes that got a copy,
/// the envelope sender, and every header change as seen in the delivered copies.
@Suite("Check parity: `sharemail check` and Postfix agree", .serialized, .e2eEnvironment())
struct CheckParityTests {
    let env: E2EEnvironment

    init() throws {
        env = try E2EEnvironment.current()
        try env.beginTest()
    }

    // MARK: Fixtures

    enum Identity: Sendable {
        case internet  // XCLIENT as a stranger
        case login(String)  // XCLIENT LOGIN=
        case local  // Postfix's sendmail command on the host
    }

    struct Fixture: Sendable, CustomTestStringConvertible {
        let label: String
        let identity: Identity
        let from: String
        let to: [String]
        /// Header lines without Subject (one is added per run); at most one field per name, so
        /// a change can be matched to the one field it replaces.
        let headers: [String]
        /// main.cf settings the Postfix path runs with (restored afterwards).
        var postfix: [String] = []
        var testDescription: String { label }
    }

    static let customer = "customer@customer.test"
    static func inbound(_ addressLines: [String], tag: String) -> [String] {
        ["From: Customer <customer@customer.test>"] + addressLines + [
            date, "Message-ID: <\(tag)@customer.test>",
        ]
    }
    static let date = "Date: Mon, 24 Nov 2025 10:00:00 +0000"

    static let fixtures: [Fixture] = [
        Fixture(
            label: "rule 1: unnamed mail to sales@", identity: .internet, from: customer,
            to: ["sales@example.com"], headers: inbound(["To: sales@example.com"], tag: "unnamed")),
        Fixture(
            label: "rule 4: \"Zhangsan\" <sales@> in To", identity: .internet, from: customer,
            to: ["sales@example.com"], headers: inbound([#"To: "Zhangsan" <sales@example.com>"#], tag: "named")),
        Fixture(
            label: "rule 4: the name in Cc, To elsewhere", identity: .internet, from: customer,
            to: ["sales@example.com"],
            headers: inbound(["To: friend@customer.test", #"Cc: "Zhangsan" <sales@example.com>"#], tag: "cc")),
        Fixture(
            label: "rule 4: an unknown name falls back to rule 1", identity: .internet, from: customer,
            to: ["sales@example.com"], headers: inbound([#"To: "Nobody" <sales@example.com>"#], tag: "unknown")),
        Fixture(
            label: "rule 2: Internet → zhangsan (no receive_internet) refused at RCPT", identity: .internet,
            from: customer, to: ["zhangsan@example.com"], headers: inbound(["To: zhangsan@example.com"], tag: "direct")),
        Fixture(
            label: "rule 2: Internet → zhangsan and sales@: one refused, one routed", identity: .internet,
            from: customer, to: ["zhangsan@example.com", "sales@example.com"],
            headers: inbound(["To: zhangsan@example.com, sales@example.com"], tag: "mixed")),
        Fixture(
            label: "rule 2: Internet → wangwu (receive_internet) plus a manager copy", identity: .internet,
            from: customer, to: ["wangwu@example.com"], headers: inbound(["To: wangwu@example.com"], tag: "wangwu")),
        Fixture(
            label: "rule 3: zhangsan (login) → customer is rewritten", identity: .login("zhangsan"),
            from: "zhangsan@example.com", to: [customer],
            headers: [
                #"From: "Zhang San" <zhangsan@example.com>"#, "Sender: zhangsan@example.com",
                "Reply-To: zhangsan@example.com", "To: customer@customer.test", date,
                "Message-ID: <staff-out@example.com>",
            ]),
        Fixture(
            label: "rule 3: zhangsan (login) → customer without Message-ID: one is added",
            identity: .login("zhangsan"), from: "zhangsan@example.com", to: [customer],
            headers: ["From: Zhangsan <zhangsan@example.com>", "To: customer@customer.test", date],
            // The lab's clients all connect from 127.0.0.1, which permit_inet_interfaces (the
            // default local_header_rewrite_clients) matches whatever XCLIENT says: cleanup would
            // add its own Message-ID before the milter sees the headers. A staff on another
            // host does not match; play that one.
            postfix: ["local_header_rewrite_clients ="]),
        Fixture(
            label: "rule 3: zhangsan (login) → customer and Cc sales@", identity: .login("zhangsan"),
            from: "zhangsan@example.com", to: [customer, "sales@example.com"],
            headers: [
                #"From: "Zhang San" <zhangsan@example.com>"#, "To: customer@customer.test",
                "Cc: sales@example.com", date, "Message-ID: <staff-cc@example.com>",
            ]),
        Fixture(
            label: "rule 3: zhangsan via sendmail → customer is rewritten", identity: .local,
            from: "zhangsan@example.com", to: [customer],
            headers: [
                #"From: "Zhang San" <zhangsan@example.com>"#, "Sender: zhangsan@example.com",
                "Reply-To: zhangsan@example.com", "To: customer@customer.test", date,
                "Message-ID: <staff-local@example.com>",
            ]),
        Fixture(
            label: "rule 3: wangwu (login, no send_internet) → customer refused at RCPT",
            identity: .login("wangwu"), from: "wangwu@example.com", to: [customer],
            headers: [
                "From: Wangwu <wangwu@example.com>", "To: customer@customer.test", date,
                "Message-ID: <wangwu-out@example.com>",
            ]),
        Fixture(
            label: "rule 3: wangwu via sendmail → customer refused at end of message", identity: .local,
            from: "wangwu@example.com", to: [customer],
            headers: [
                "From: Wangwu <wangwu@example.com>", "To: customer@customer.test", date,
                "Message-ID: <wangwu-local@example.com>",
            ]),
        Fixture(
            label: "rule 5: zhangsan (login) → lisi passes untouched", identity: .login("zhangsan"),
            from: "zhangsan@example.com", to: ["lisi@example.com"],
            headers: [
                #"From: "Zhang San" <zhangsan@example.com>"#, "To: Lisi <lisi@example.com>", date,
                "Message-ID: <internal@example.com>",
            ]),
        Fixture(
            label: "rule 5: manager (login) → zhangsan passes untouched", identity: .login("manager"),
            from: "manager@example.com", to: ["zhangsan@example.com"],
            headers: [
                "From: Manager <manager@example.com>", "To: zhangsan@example.com", date,
                "Message-ID: <manager@example.com>",
            ]),
        Fixture(
            label: "rule 6: a spoofed staff sender from the Internet is Internet mail", identity: .internet,
            from: "zhangsan@example.com", to: ["sales@example.com"],
            headers: [
                #"From: "Zhang San" <zhangsan@example.com>"#, "To: sales@example.com", date,
                "Message-ID: <spoof@customer.test>",
            ]),
    ]

    // MARK: The test

    @Test("check --json and the Postfix path give the same verdict", arguments: fixtures)
    func sameVerdict(_ fixture: Fixture) throws {
        let tag = uniqueTag()
        let headerLines = fixture.headers + ["Subject: parity \(tag)"]
        let names = headerLines.map { $0.prefix { $0 != ":" }.lowercased() }
        try #require(Set(names).count == names.count, "fixture repeats a header field: \(names)")
        let mail = message(headerLines)

        let verdict = try check(fixture, message: mail)
        let evidence = "check said: \(verdict.raw)"
        try withPostfixSettings(fixture.postfix) {
            try compare(fixture, verdict: verdict, message: mail, headerLines: headerLines, evidence: evidence)
        }
    }

    /// Sends `message` through the lab's Postfix and compares what happened with `verdict`.
    private func compare(
        _ fixture: Fixture, verdict: Verdict, message mail: [UInt8], headerLines: [String],
        evidence: String
    ) throws {

        switch fixture.identity {
        case .internet, .login:
            let outcome = try env.sendAndDeliver(
                as: smtpIdentity(fixture.identity), from: fixture.from,
                to: fixture.to, message: mail)
            if verdict.action == "reject" {
                try expectSameRefusal(verdict, outcome: outcome, evidence: evidence)
                try env.expectMailboxes([:])
                try env.expectSinkCount(0)
            } else {
                #expect(verdict.action == "accept", "\(evidence)")
                #expect(outcome.accepted, "check accepts, Postfix did not: \(outcome)\n\(evidence)\n\(env.diagnostics)")
                // Each RCPT Postfix refused, check refused too (listed in its reasons).
                let refused = zip(fixture.to, outcome.rcpt).filter { !$0.1.isPositive }
                #expect(
                    Set(refused.map { $0.0 }) == Set(verdict.refusedRecipients.keys),
                    "RCPT refusals differ: Postfix \(refused.map { "\($0.0): \($0.1)" }), check \(verdict.refusedRecipients)\n\(evidence)")
                for (recipient, reply) in refused {
                    #expect(
                        verdict.refusedRecipients[recipient] == "\(reply.code) \(enhancedCode(reply) ?? "?")",
                        "\(recipient): Postfix said \(reply)\n\(evidence)")
                }
                let accepted = zip(fixture.to, outcome.rcpt).filter { $0.1.isPositive }.map { $0.0 }
                try expectDelivered(
                    verdict, envelopeFrom: fixture.from, accepted: accepted, original: headerLines,
                    evidence: evidence)
            }
        case .local:
            let result = try env.postfix.sendmail(from: fixture.from, to: fixture.to, message: mail)
            try env.waitForDelivery()
            if verdict.action == "reject" {
                try expectLocalRefusal(verdict, sender: fixture.from, sendmail: result, evidence: evidence)
            } else {
                #expect(verdict.action == "accept", "\(evidence)")
                #expect(result.succeeded, "\(result)\n\(evidence)")
                try expectDelivered(
                    verdict, envelopeFrom: fixture.from, accepted: fixture.to, original: headerLines,
                    evidence: evidence)
            }
        }
    }

    /// Runs `body` with `settings` in the lab's main.cf, then puts the old values back.
    private func withPostfixSettings(_ settings: [String], _ body: () throws -> Void) throws {
        guard !settings.isEmpty else { return try body() }
        let conf = env.postfix.configDirectory
        let names = settings.map { String($0.prefix { $0 != "=" }).trimmingCharacters(in: .whitespaces) }
        let before = try Command.run(["postconf", "-c", conf, "-n"] + names)
        let restore = before.output.split(separator: "\n").map(String.init)
        let unset = names.filter { name in !restore.contains { $0.hasPrefix(name + " =") } }
        try reload(["-e"] + settings)
        defer {
            if !restore.isEmpty { try? reload(["-e"] + restore) }
            if !unset.isEmpty { try? reload(["-X"] + unset) }
        }
        try body()
    }

    /// postconf, then `postfix reload`, then waits until smtpd answers again.
    private func reload(_ postconf: [String]) throws {
        let conf = env.postfix.configDirectory
        let edit = try Command.run(["postconf", "-c", conf] + postconf)
        try #require(edit.succeeded, "\(edit)")
        let reload = try Command.run(["postfix", "-c", conf, "reload"])
        try #require(reload.succeeded, "\(reload)")
        // Idle smtpd processes of the old configuration exit on reload; the master serves the
        // next connection with a fresh one.
        usleep(500_000)
        try #require(poll(timeout: .seconds(10)) { SMTPClient.canConnect(port: env.postfix.smtpPort) })
    }

    // MARK: sharemail check

    /// What `sharemail check --json` printed.
    struct Verdict: Decodable {
        struct Change: Decodable {
            let op: String
            let name: String
            let value: String?
        }

        let action: String
        let reply: String?
        let addRecipients: [String]
        let removeRecipients: [String]
        let envelopeFrom: String?
        let headerChanges: [Change]
        let reasons: [String]
        var raw = ""

        enum CodingKeys: String, CodingKey {
            case action, reply, reasons
            case addRecipients = "add_recipients"
            case removeRecipients = "remove_recipients"
            case envelopeFrom = "envelope_from"
            case headerChanges = "header_changes"
        }

        /// "RCPT <a@b>: refused: 550 5.7.1 …" in the reasons → ["a@b": "550 5.7.1"].
        var refusedRecipients: [String: String] {
            var result: [String: String] = [:]
            for reason in reasons where reason.hasPrefix("RCPT ") {
                guard let marker = reason.range(of: ": refused: ") else { continue }
                let address = reason[reason.index(reason.startIndex, offsetBy: 5)..<marker.lowerBound]
                    .trimmingCharacters(in: CharacterSet(charactersIn: "<>"))
                let codes = reason[marker.upperBound...].split(separator: " ").prefix(2).joined(separator: " ")
                result[address] = codes
            }
            return result
        }
    }

    /// Runs the binary the daemon runs, with the daemon's configuration, as the same client.
    private func check(_ fixture: Fixture, message: [UInt8]) throws -> Verdict {
        let daemon = try #require(env.sharemail, "the lab runs no sharemail")
        var argv = [LabPaths.sharemailBinary, "check", "--config", daemon.configPath, "--json", "--from", fixture.from]
        for recipient in fixture.to { argv += ["--rcpt", recipient] }
        switch fixture.identity {
        case .internet: argv += ["--client-ip", clientIP(of: .internet)]
        case .login(let login): argv += ["--login", login, "--client-ip", clientIP(of: .staff(login: login))]
        case .local: argv += ["--local"]
        }
        argv.append("-")
        let result = try Command.run(argv, stdin: message)
        #expect([0, 1].contains(result.status), "\(result)")
        let json = try #require(result.output.firstIndex(of: "{").map { result.output[$0...] }, "no JSON: \(result)")
        var verdict = try JSONDecoder().decode(Verdict.self, from: Data(json.utf8))
        verdict.raw = String(json)
        #expect((result.status == 0) == (verdict.action == "accept"), "exit status vs action: \(result)")
        return verdict
    }

    private func smtpIdentity(_ identity: Identity) -> SMTPIdentity {
        if case .login(let login) = identity { return .staff(login: login) }
        return .internet
    }

    /// The address the lab's XCLIENT gives Postfix for this identity, so check sees the same client.
    private func clientIP(of identity: SMTPIdentity) -> String {
        let address = identity.xclient.split(separator: " ").first { $0.hasPrefix("ADDR=") }
        return address.map { String($0.dropFirst(5)) } ?? ""
    }

    // MARK: Comparisons

    /// "550 5.7.1 text" → ("550", "5.7.1")
    private func codes(_ reply: String?) -> (code: String, enhanced: String)? {
        guard let parts = reply?.split(separator: " "), parts.count >= 2 else { return nil }
        return (String(parts[0]), String(parts[1]))
    }

    private func enhancedCode(_ reply: SMTPReply) -> String? {
        reply.lines.first?.split(separator: " ").first.map(String.init)
    }

    /// A check reject is what Postfix answered first that was not positive: at RCPT when every
    /// recipient was refused, else at the end of data.
    private func expectSameRefusal(_ verdict: Verdict, outcome: SMTPOutcome, evidence: String) throws {
        let expected = try #require(codes(verdict.reply), "a reject without a reply: \(evidence)")
        let refusal = try #require(outcome.firstRefusal, "check rejects, Postfix accepted: \(outcome)\n\(evidence)\n\(env.diagnostics)")
        if outcome.data == nil {  // refused at RCPT: every recipient, each with check's reply
            #expect(
                outcome.rcpt.allSatisfy { "\($0.code)" == expected.code && enhancedCode($0) == expected.enhanced },
                "\(outcome)\n\(evidence)")
        }
        #expect(
            "\(refusal.code)" == expected.code && enhancedCode(refusal) == expected.enhanced,
            "check: \(verdict.reply ?? ""); Postfix: \(refusal)\n\(evidence)\n\(env.diagnostics)")
        #expect(!outcome.accepted, "\(outcome)")
        if let reply = verdict.reply {
            let text = reply.split(separator: " ", maxSplits: 2).dropFirst(2).joined()
            #expect(refusal.text.contains(text), "reply text differs: check \(reply); Postfix \(refusal)")
        }
    }

    /// Mail from the sendmail command cannot be refused to the client: Postfix bounces it to the
    /// envelope sender (or sendmail fails). Either way nothing is delivered anywhere else.
    private func expectLocalRefusal(_ verdict: Verdict, sender: String, sendmail: Command.Result, evidence: String) throws {
        let expected = try #require(codes(verdict.reply), "a reject without a reply: \(evidence)")
        try env.expectSinkCount(0)
        let senderBox = mailbox(of: sender)
        var counts = try env.maildirs.counts()
        let bounces = senderBox.flatMap { try? env.maildirs.messages($0) } ?? []
        if let senderBox { counts[senderBox] = 0 }
        #expect(counts.values.allSatisfy { $0 == 0 }, "delivered despite a reject: \(counts)\n\(evidence)\n\(env.diagnostics)")
        if sendmail.succeeded {
            let bounce = try #require(bounces.first, "neither sendmail nor a bounce refused it: \(sendmail)\n\(evidence)\n\(env.diagnostics)")
            #expect(bounces.count == 1)
            // A bounce carries the enhanced code (Status:) and the text, not the SMTP code.
            let text = (verdict.reply ?? "").split(separator: " ", maxSplits: 2).dropFirst(2).joined()
            #expect(
                bounce.text.contains("Status: \(expected.enhanced)") && normalized(bounce.text).contains(normalized(text)),
                "the bounce does not carry check's reply \(verdict.reply ?? ""): \(bounce.text)")
        } else {
            #expect(sendmail.output.contains(expected.enhanced), "\(sendmail)\n\(evidence)")
        }
    }

    /// Where Postfix delivers `address`: a Maildir of example.com (sales@ through the lab's
    /// virtual_alias_maps entry to manager@), or nil for the Internet (the sink).
    private func mailbox(of address: String) -> String? {
        let lower = address.lowercased()
        guard lower.hasSuffix("@example.com") else { return nil }
        let local = String(lower.dropLast("@example.com".count))
        return local == "sales" ? "manager" : local
    }

    private func expectDelivered(
        _ verdict: Verdict, envelopeFrom sender: String, accepted: [String],
        original: [String], evidence: String
    ) throws {
        // Recipients: envelope − remove_recipients + add_recipients, one copy per distinct address.
        let removed = Set(verdict.removeRecipients.map { $0.lowercased() })
        var finals: [String] = []
        for address in accepted.filter({ !removed.contains($0.lowercased()) }) + verdict.addRecipients
        where !finals.contains(address.lowercased()) {
            finals.append(address.lowercased())
        }
        var expectedBoxes: [String: Int] = [:]
        var expectedInternet: Set<String> = []
        for address in finals {
            if let box = mailbox(of: address) { expectedBoxes[box, default: 0] += 1 } else { expectedInternet.insert(address) }
        }
        try env.expectMailboxes(expectedBoxes)
        let sent = try env.sink.messages()
        #expect(
            Set(sent.flatMap(\.envelopeRecipients).map { $0.lowercased() }) == expectedInternet,
            "Internet recipients differ: sink \(sent.map(\.envelopeRecipients))\n\(evidence)\n\(env.diagnostics)")

        // Envelope sender: the sink's MAIL FROM, and Return-Path in each Maildir copy.
        let envelopeSender = verdict.envelopeFrom ?? sender
        for copy in sent {
            #expect(copy.envelopeSender == envelopeSender, "sink MAIL FROM: \(copy)\n\(evidence)")
        }
        var copies = sent.map(\.file)
        for box in PostfixInstance.mailboxes {
            for copy in try env.maildirs.messages(box) {
                #expect(copy.value("Return-Path") == "<\(envelopeSender)>", "\(box): \(copy)\n\(evidence)")
                copies.append(copy)
            }
        }

        // Headers: the original fields with check's changes applied, field by field.
        var expected: [String: [String]] = [:]
        var display: [String: String] = [:]
        for line in original {
            let name = String(line.prefix { $0 != ":" })
            expected[name.lowercased(), default: []].append(normalized(String(line.dropFirst(name.count + 1))))
            display[name.lowercased()] = name
        }
        for change in verdict.headerChanges {
            let key = change.name.lowercased()
            display[key] = display[key] ?? change.name
            switch change.op {
            case "add": expected[key, default: []].append(normalized(change.value ?? ""))
            case "change": expected[key] = [normalized(change.value ?? "")]  // fixtures hold one field per name
            case "delete": expected[key] = []
            default: Issue.record("unknown header change \(change.op): \(evidence)")
            }
        }
        for copy in copies {
            for (key, values) in expected {
                let got = copy.values(display[key] ?? key).map(normalized)
                #expect(
                    got.count == values.count && zip(got, values).allSatisfy(sameValue),
                    "\(display[key] ?? key): check expects \(values), delivered \(got)\n\(copy.path)\n\(evidence)")
            }
        }
    }

    /// Folding and runs of blanks do not matter.
    private func normalized(_ value: String) -> String {
        value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }).joined(separator: " ")
    }

    /// Equal, except that check's fixed Message-ID token stands for the daemon's random one.
    private func sameValue(_ delivered: String, _ expected: String) -> Bool {
        let token = "sharemail-check"
        guard let range = expected.range(of: token) else { return delivered == expected }
        let prefix = expected[..<range.lowerBound], suffix = expected[range.upperBound...]
        return delivered.hasPrefix(prefix) && delivered.hasSuffix(suffix) && delivered.count > prefix.count + suffix.count
    }
}
