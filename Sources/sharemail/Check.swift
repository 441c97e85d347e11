import ArgumentParser
import Foundation
import ShareMail

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what sharemail would do with a message, without sending anything.",
        discussion: """
            Runs the same engine as `sharemail serve` on an envelope and, optionally, a \
            message (a file, or - for standard input; the headers are enough). Prints \
            the verdict with its SMTP reply, the recipients added and removed, the \
            envelope sender change, each header change, and the reasons in order.

            Without a message only the envelope rules are checked (RCPT refusals, \
            recipient changes).

            The sender is the Internet unless --login (an SMTP AUTH login), --local \
            (the sendmail command on the host) or a --client-ip in trusted_networks \
            says otherwise.

            Give addresses as Postfix resolves them (user@domain): the daemon reads \
            Postfix's own resolution ({mail_addr}, {rcpt_addr}), and check has no \
            Postfix to ask, so a bang path, a percent hack or a bare name is \
            reported as one the daemon could not place.

            EXIT STATUS
              0 accept, 1 reject or tempfail, 64 bad usage, 65 unreadable message,
              78 bad configuration.

            EXAMPLES
              A customer replies to "Zhangsan" <sales@example.com>:
                sharemail check --config /etc/sharemail/sharemail.toml \\
                    --from customer@customer.test --rcpt sales@example.com reply.eml

              Zhangsan writes to a customer, as JSON:
                sharemail check --config sharemail.toml --login zhangsan \\
                    --from zhangsan@example.com --rcpt customer@customer.test --json - < draft.eml

              Would the Internet reach Lisi directly?
                sharemail check --config sharemail.toml --from x@customer.test --rcpt lisi@example.com
            """
    )

    @OptionGroup var configurationFile: ConfigurationFileOption
    var config: String { configurationFile.config }

    @Option(name: .long, help: ArgumentHelp("Envelope sender (MAIL FROM); \"\" for the null sender.", valueName: "address"))
    var from: String

    @Option(name: .long, help: ArgumentHelp("Envelope recipient (RCPT TO); repeat for several.", valueName: "address"))
    var rcpt: [String] = []

    @Option(name: .long, help: ArgumentHelp("SASL login of the SMTP session.", valueName: "name"))
    var login: String?

    @Option(name: .customLong("client-ip"), help: ArgumentHelp("Address of the SMTP client.", valueName: "ip"))
    var clientIP: String?

    @Flag(name: .long, help: "The message comes from the sendmail command on this host.")
    var local = false

    @Flag(name: .long, help: "Print one JSON object instead of text.")
    var json = false

    @Argument(help: ArgumentHelp("The message, or - for standard input.", valueName: "message"))
    var message: String?

    func validate() throws {
        if rcpt.isEmpty { throw ValidationError("give at least one --rcpt") }
        if local && (login != nil || clientIP != nil) {
            throw ValidationError("--local cannot go with --login or --client-ip: the sendmail command has neither")
        }
        if let clientIP, IPAddress(clientIP) == nil { throw ValidationError("--client-ip: \"\(clientIP)\" is not an IP address") }
    }

    func run() throws {
        let engine: PolicyEngine
        do {
            engine = PolicyEngine(configuration: try ConfigurationFile.load(config).0)
        } catch {
            FileHandle.standardError.write(Data("sharemail check: \(error)\n".utf8))
            throw ExitCode(78)
        }
        var headers: [Header]?
        if let message {
            do {
                let data = message == "-" ? FileHandle.standardInput.readDataToEndOfFile()
                    : try Data(contentsOf: URL(fileURLWithPath: message))
                headers = HeaderBlock.parse(Array(data))
            } catch {
                FileHandle.standardError.write(Data("sharemail check: cannot read \(message): \((error as NSError).localizedDescription)\n".utf8))
                throw ExitCode(65)
            }
        }

        let submission = Submission(channel: local ? .local : .smtp, login: login, clientAddress: clientIP.flatMap(IPAddress.init))
        let report = CheckReport.evaluate(engine: engine, submission: submission, sender: EnvelopeAddress(local ? from : "<\(from)>"),
                                          recipients: rcpt.map { EnvelopeAddress(local ? $0 : "<\($0)>") }, headers: headers)
        print(json ? report.json() : report.text())
        if report.action != "accept" { throw ExitCode(1) }
    }
}

/// The outcome of `sharemail check`: the RCPT verdicts, then the end of
/// message, exactly as the daemon would reach them.
struct CheckReport: Encodable {
    struct Change: Encodable {
        let op: String
        let name: String
        let value: String?
        var old: String?

        enum CodingKeys: String, CodingKey { case op, name, value }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(op, forKey: .op)
            try container.encode(name, forKey: .name)
            try container.encode(value, forKey: .value)
        }
    }

    var action: String
    var reply: String?
    var addRecipients: [String] = []
    var removeRecipients: [String] = []
    var envelopeFrom: String?
    var headerChanges: [Change] = []
    var reasons: [String] = []

    enum CodingKeys: String, CodingKey {
        case action, reply, reasons
        case addRecipients = "add_recipients"
        case removeRecipients = "remove_recipients"
        case envelopeFrom = "envelope_from"
        case headerChanges = "header_changes"
    }

    /// A fixed token, so that the Message-ID a check shows is reproducible
    /// (the daemon uses a random one).
    static let checkToken = "sharemail-check"

    static func evaluate(engine: PolicyEngine, submission: Submission, sender: EnvelopeAddress,
                         recipients: [EnvelopeAddress], headers: [Header]?) -> CheckReport {
        var accepted: [EnvelopeAddress] = []
        var refusals: [(EnvelopeAddress, SMTPReply, String, deferred: Bool)] = []
        for recipient in recipients {
            switch engine.checkRecipient(recipient, submission: submission, sender: sender) {
            case .accept: accepted.append(recipient)
            case .reject(let reply, let reason): refusals.append((recipient, reply, reason, false))
            case .tempfail(let reply, let reason): refusals.append((recipient, reply, reason, true))
            }
        }
        let refusalReasons = refusals.map { "RCPT \($0.0.written): \($0.deferred ? "deferred" : "refused"): \($0.1) (\($0.2))" }
        guard !accepted.isEmpty else {
            // Every recipient refused: the client never gets to DATA.
            let (_, why) = engine.role(of: submission, sender: sender)
            let deferred = refusals.contains { $0.deferred } && !refusals.contains { !$0.deferred }
            return CheckReport(action: deferred ? "tempfail" : "reject", reply: refusals.first.map { "\($0.1)" },
                               reasons: [why] + refusalReasons)
        }
        let facts = MessageFacts(submission: submission, sender: sender, recipients: accepted, headers: headers ?? [],
                                 uniqueToken: checkToken)
        let decision = engine.decide(facts)
        var report = CheckReport(action: "accept")
        switch decision.action {
        case .accept: break
        case .reject(let reply): report = CheckReport(action: "reject", reply: "\(reply)")
        case .tempfail(let reply): report = CheckReport(action: "tempfail", reply: "\(reply)")
        }
        report.addRecipients = decision.addRecipients.map(\.value)
        report.removeRecipients = decision.removeRecipients.map { String($0.trimmingCharacters(in: CharacterSet(charactersIn: "<> "))) }
        report.envelopeFrom = decision.envelopeSender?.value
        if headers != nil {
            report.headerChanges = decision.headerChanges.map {
                Change(op: $0.operation.rawValue, name: $0.name, value: $0.value, old: $0.oldValue)
            }
        }
        report.reasons = Array(decision.reasons.prefix(1)) + refusalReasons + decision.reasons.dropFirst()
        if headers == nil { report.reasons.append("no message given: header rules not checked") }
        return report
    }

    /// Every key is always present: null, not missing, when there is no value.
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(action, forKey: .action)
        try container.encode(reply, forKey: .reply)
        try container.encode(addRecipients, forKey: .addRecipients)
        try container.encode(removeRecipients, forKey: .removeRecipients)
        try container.encode(envelopeFrom, forKey: .envelopeFrom)
        try container.encode(headerChanges, forKey: .headerChanges)
        try container.encode(reasons, forKey: .reasons)
    }

    func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(self) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    func text() -> String {
        var lines = ["action: \(action)" + (reply.map { " (\($0))" } ?? "")]
        if let envelopeFrom { lines.append("envelope sender: → \(envelopeFrom)") }
        for address in addRecipients { lines.append("recipient added: \(address)") }
        for address in removeRecipients { lines.append("recipient removed: \(address)") }
        for change in headerChanges {
            switch change.op {
            case "add": lines.append("header added: \(change.name): \(oneLine(change.value))")
            case "delete": lines.append("header deleted: \(change.name): \(oneLine(change.old))")
            default: lines.append("header changed: \(change.name): \(oneLine(change.old)) → \(oneLine(change.value))")
            }
        }
        lines.append("reasons:")
        lines += reasons.enumerated().map { "  \($0.offset + 1). \($0.element)" }
        return lines.joined(separator: "\n")
    }

    private func oneLine(_ value: String?) -> String {
        (value ?? "").replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "\t", with: "")
    }
}
