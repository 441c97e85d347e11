import Foundation
import PostfixLab
import Testing

/// `sharemail doctor` against the lab's running Postfix and sharemail: the lab is set up as
/// the README advises, so doctor must find nothing; each way of breaking a copy of its
/// configuration must give exactly one FAIL with a fix; a silent milter must be noticed.
@Suite("Doctor: `sharemail doctor` on a live Postfix", .serialized, .e2eEnvironment())
struct DoctorTests {
    let env: E2EEnvironment

    init() throws {
        env = try E2EEnvironment.current()
        try env.beginTest()
    }

    // MARK: Running doctor

    struct Report: CustomStringConvertible {
        struct Finding {
            let level: String  // "OK", "WARN" or "FAIL"
            let text: String
            var fix: String?
        }

        let status: Int32
        let output: String
        let findings: [Finding]
        var failures: [Finding] { findings.filter { $0.level == "FAIL" } }
        var description: String { "exit \(status):\n\(output)" }

        init(_ result: Command.Result) {
            status = result.status
            output = result.output
            var findings: [Finding] = []
            for line in result.output.split(separator: "\n") {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if trimmed.hasPrefix("fix: "), !findings.isEmpty, line.hasPrefix(" ") {
                    findings[findings.count - 1].fix = String(trimmed.dropFirst(5))
                } else if let level = ["OK", "WARN", "FAIL"].first(where: { line.hasPrefix($0 + " ") }) {
                    findings.append(Finding(level: level, text: line.dropFirst(level.count).trimmingCharacters(in: .whitespaces)))
                }
            }
            self.findings = findings
        }
    }

    private var daemon: SharemailDaemon {
        get throws { try #require(env.sharemail, "the lab runs no sharemail") }
    }

    private var socketSpec: String {
        get throws { "unix:" + (try daemon.socketPath) }
    }

    /// `sharemail doctor --config <the daemon's file> -c DIR --socket <the daemon's socket>`.
    /// The lab's file names a placeholder socket (the daemon gets `--socket`), so doctor is told
    /// the real one the same way.
    private func doctor(postfix directory: String, socket: String? = nil, config: String? = nil) throws -> Report {
        var argv = [LabPaths.sharemailBinary, "doctor", "--config", try config ?? daemon.configPath, "-c", directory]
        if let socket = try socket ?? (config == nil ? socketSpec : nil) { argv += ["--socket", socket] }
        return Report(try Command.run(argv, timeout: .seconds(60)))
    }

    /// A copy of the lab's Postfix configuration directory, to break without harming the lab.
    private func copyOfConf() throws -> String {
        let copy = env.directory + "/doctor-conf-" + uniqueTag()
        try FileManager.default.copyItem(atPath: env.postfix.configDirectory, toPath: copy)
        return copy
    }

    private func postconf(_ directory: String, _ arguments: [String]) throws {
        let result = try Command.run(["postconf", "-c", directory] + arguments)
        try #require(result.succeeded, "\(result)")
    }

    // MARK: The live instance

    @Test("the lab, set up as the README advises: exit 0, no problems found")
    func liveInstanceIsHealthy() throws {
        let report = try doctor(postfix: env.postfix.configDirectory)
        #expect(report.status == 0, "\(report)\n\(env.diagnostics)")
        #expect(report.output.contains("no problems found"), "\(report)")
        #expect(report.failures.isEmpty, "\(report)")
        let socket = try socketSpec
        for expected in [
            "smtpd_milters lists sharemail", "non_smtpd_milters lists sharemail",
            "milter_default_action = tempfail", "milter_protocol = 6",
            "unified address sales@example.com is accepted by Postfix",
            "manager of sales@example.com manager@example.com has a virtual mailbox",
            "sharemail answers on \(socket)",
        ] {
            #expect(
                report.findings.contains { $0.level == "OK" && $0.text.hasPrefix(expected) },
                "no OK finding \"\(expected)…\":\n\(report)")
        }
    }

    @Test("as an admin runs it: the socket from the configuration file, no --socket")
    func socketFromConfigurationFile() throws {
        let original = try String(contentsOfFile: try daemon.configPath, encoding: .utf8)
        let socket = try socketSpec
        let lines = original.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            line.hasPrefix("socket =") ? "socket = \"\(socket)\"" : String(line)
        }
        let config = env.directory + "/doctor-" + uniqueTag() + ".toml"
        try lines.joined(separator: "\n").write(toFile: config, atomically: true, encoding: .utf8)
        let report = try doctor(postfix: env.postfix.configDirectory, config: config)
        #expect(report.status == 0 && report.failures.isEmpty, "\(report)")
    }

    @Test("an unchanged copy of the configuration is as healthy as the original")
    func unchangedCopyIsHealthy() throws {
        let report = try doctor(postfix: try copyOfConf())
        #expect(report.status == 0 && report.failures.isEmpty, "\(report)")
    }

    // MARK: Broken copies

    enum Breakage: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case defaultActionAccept, perMilterDefaultActionAccept, dkimBeforeSharemail, nonSMTPDMiltersEmpty,
            chrootedSMTPD, unifiedNotDeliverable, oldMilterProtocol, saslLoginInReceived, otherRecipientDelimiter

        var testDescription: String {
            switch self {
            case .defaultActionAccept: "milter_default_action = accept"
            case .perMilterDefaultActionAccept: "non_smtpd_milters = { sharemail, default_action=accept } (Postfix 3.0 syntax)"
            case .dkimBeforeSharemail: "a DKIM milter (inet:127.0.0.1:8891) before sharemail in smtpd_milters"
            case .nonSMTPDMiltersEmpty: "non_smtpd_milters emptied"
            case .chrootedSMTPD: "smtpd chrooted in master.cf"
            case .unifiedNotDeliverable: "sales@ removed from virtual_alias_maps and virtual_mailbox_maps"
            case .oldMilterProtocol: "milter_protocol = 2"
            case .saslLoginInReceived: "smtpd_sasl_authenticated_header = yes"
            case .otherRecipientDelimiter: "recipient_delimiter = - in Postfix, + in sharemail"
            }
        }
    }

    /// Breaks `directory` (a copy of the lab's conf) one way.
    private func apply(_ breakage: Breakage, to directory: String) throws {
        let socket = try socketSpec
        switch breakage {
        case .defaultActionAccept:
            try postconf(directory, ["-e", "milter_default_action = accept"])
        case .perMilterDefaultActionAccept:
            try postconf(directory, ["-e", "non_smtpd_milters = { \(socket), default_action=accept }"])
        case .dkimBeforeSharemail:
            try postconf(directory, ["-e", "smtpd_milters = inet:127.0.0.1:8891, \(socket)"])
        case .nonSMTPDMiltersEmpty:
            try postconf(directory, ["-e", "non_smtpd_milters ="])
        case .chrootedSMTPD:
            try postconf(directory, ["-F", "127.0.0.1:\(env.postfix.smtpPort)/inet/chroot = y"])
        case .unifiedNotDeliverable:
            // The copy's own tables: the alias map without sales@, the mailbox map as before.
            let mailboxes = try String(contentsOfFile: directory + "/vmailbox", encoding: .utf8)
            #expect(!mailboxes.contains("sales@"), "the lab's vmailbox changed: \(mailboxes)")
            try "# sales@example.com removed\n".write(toFile: directory + "/virtual", atomically: true, encoding: .utf8)
            try postconf(
                directory,
                [
                    "-e", "virtual_alias_maps = texthash:\(directory)/virtual",
                    "virtual_mailbox_maps = texthash:\(directory)/vmailbox",
                ])
        case .oldMilterProtocol:
            try postconf(directory, ["-e", "milter_protocol = 2"])
        case .saslLoginInReceived:
            try postconf(directory, ["-e", "smtpd_sasl_authenticated_header = yes"])
        case .otherRecipientDelimiter:
            try postconf(directory, ["-e", "recipient_delimiter = -"])
        }
    }

    /// The FAIL line each breakage must give, and what its fix must say.
    private func expectedFailure(_ breakage: Breakage) throws -> (text: String, fix: String) {
        let socket = try socketSpec
        switch breakage {
        case .defaultActionAccept:
            return ("milter_default_action = accept:", "postconf -e milter_default_action=tempfail")
        case .perMilterDefaultActionAccept:
            return (
                "non_smtpd_milters: sharemail's entry sets default_action=accept",
                "postconf -e 'non_smtpd_milters = \(socket)'"
            )
        case .dkimBeforeSharemail:
            return (
                "smtpd_milters: inet:127.0.0.1:8891 runs before sharemail",
                "postconf -e 'smtpd_milters = \(socket), inet:127.0.0.1:8891'"
            )
        case .nonSMTPDMiltersEmpty:
            return ("non_smtpd_milters does not list sharemail (\(socket))", "postconf -e 'non_smtpd_milters = \(socket)'")
        case .chrootedSMTPD:
            return (
                "master.cf: 127.0.0.1:\(env.postfix.smtpPort) (smtpd) runs chrooted",
                "postconf -F '127.0.0.1:\(env.postfix.smtpPort)/inet/chroot=n'"
            )
        case .unifiedNotDeliverable:
            return (
                "unified address sales@example.com is in no virtual_mailbox_maps or virtual_alias_maps table",
                "add it to virtual_mailbox_maps"
            )
        case .oldMilterProtocol:
            return ("milter_protocol = 2:", "postconf -e milter_protocol=6")
        case .saslLoginInReceived:
            return ("smtpd_sasl_authenticated_header = yes:", "postconf -e smtpd_sasl_authenticated_header=no")
        case .otherRecipientDelimiter:
            return ("recipient_delimiter = \"-\" in Postfix, \"+\" in sharemail", "set recipient_delimiter = \"-\" in sharemail's configuration")
        }
    }

    @Test("each breakage: exit 1 and exactly one FAIL, with its fix", arguments: Breakage.allCases)
    func breakageIsFound(_ breakage: Breakage) throws {
        let copy = try copyOfConf()
        try apply(breakage, to: copy)
        let report = try doctor(postfix: copy)
        let (text, fix) = try expectedFailure(breakage)
        #expect(report.status == 1, "\(report)")
        #expect(report.output.contains("1 problem(s) found"), "\(report)")
        #expect(report.failures.count == 1, "\(report)")
        let failure = try #require(report.failures.first { $0.text.hasPrefix(text) }, "no FAIL \"\(text)…\":\n\(report)")
        #expect(failure.fix?.contains(fix) == true, "fix should contain \"\(fix)\":\n\(report)")
    }

    @Test("every breakage at once: one FAIL with a fix for each")
    func allBreakagesAreFound() throws {
        // The per-milter default_action lives in non_smtpd_milters, which another breakage empties.
        let breakages = Breakage.allCases.filter { $0 != .perMilterDefaultActionAccept }
        let copy = try copyOfConf()
        for breakage in breakages { try apply(breakage, to: copy) }
        let report = try doctor(postfix: copy)
        #expect(report.status == 1, "\(report)")
        #expect(report.output.contains("\(breakages.count) problem(s) found"), "\(report)")
        #expect(report.failures.count == breakages.count, "\(report)")
        for breakage in breakages {
            let (text, _) = try expectedFailure(breakage)
            let failure = report.failures.first { $0.text.hasPrefix(text) }
            #expect(failure?.fix?.isEmpty == false, "\(breakage.testDescription): no FAIL \"\(text)…\" with a fix:\n\(report)")
        }
    }

    // MARK: A silent milter

    @Test("sharemail stopped: \"does not answer\" FAIL, with a fix")
    func stoppedSharemail() throws {
        let daemon = try daemon
        daemon.stop()
        defer { try? daemon.start() }
        let report = try doctor(postfix: env.postfix.configDirectory)
        try expectDoesNotAnswer(report)
    }

    @Test("sharemail killed (its socket file left behind): \"does not answer\" FAIL")
    func killedSharemail() throws {
        let daemon = try daemon
        daemon.kill()
        defer { try? daemon.start() }
        #expect(FileManager.default.fileExists(atPath: daemon.socketPath), "kill should leave the socket file")
        let report = try doctor(postfix: env.postfix.configDirectory)
        try expectDoesNotAnswer(report)
    }

    private func expectDoesNotAnswer(_ report: Report) throws {
        #expect(report.status == 1, "\(report)")
        #expect(report.failures.count == 1, "\(report)")
        let failure = try #require(
            report.failures.first { $0.text.hasPrefix("sharemail does not answer on \(try socketSpec)") },
            "\(report)")
        #expect(failure.fix?.isEmpty == false, "\(report)")
    }
}
