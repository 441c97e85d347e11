import Foundation
import ShareMail

/// The outcome of `sharemail check`: the RCPT verdicts, then the end of
/// message, exactly as the daemon would reach them.
public struct CheckReport: Encodable {
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

    /// A recipient refused at RCPT, as the client would see it.
    struct Refusal: Encodable {
        /// The address as given.
        let recipient: String
        /// reject or tempfail.
        let action: String
        /// The SMTP reply, e.g. "550 5.7.1 …".
        let reply: String
        let reason: String
    }

    public var action: String
    var reply: String?
    var refusedRecipients: [Refusal] = []
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
        case refusedRecipients = "refused_recipients"
    }

    /// A fixed token, so that the Message-ID a check shows is reproducible
    /// (the daemon uses a random one).
    static let checkToken = "sharemail-check"

    public static func evaluate(
        engine: PolicyEngine, submission: Submission, sender: EnvelopeAddress,
        recipients: [EnvelopeAddress], headers: [Header]?
    ) -> CheckReport {
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
        let refused = refusals.map {
            Refusal(
                recipient: $0.0.bare.isEmpty ? $0.0.written : $0.0.bare, action: $0.deferred ? "tempfail" : "reject",
                reply: "\($0.1)", reason: $0.2)
        }
        guard !accepted.isEmpty else {
            // Every recipient refused: the client never gets to DATA.
            let (_, why) = engine.role(of: submission, sender: sender)
            let deferred = refusals.contains { $0.deferred } && !refusals.contains { !$0.deferred }
            return CheckReport(
                action: deferred ? "tempfail" : "reject", reply: refusals.first.map { "\($0.1)" },
                refusedRecipients: refused, reasons: [why] + refusalReasons)
        }
        let facts = MessageFacts(
            submission: submission, sender: sender, recipients: accepted, headers: headers ?? [],
            uniqueToken: checkToken)
        let decision = engine.decide(facts)
        var report = CheckReport(action: "accept")
        switch decision.action {
        case .accept: break
        case .reject(let reply): report = CheckReport(action: "reject", reply: "\(reply)")
        case .tempfail(let reply): report = CheckReport(action: "tempfail", reply: "\(reply)")
        }
        report.refusedRecipients = refused
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
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(action, forKey: .action)
        try container.encode(reply, forKey: .reply)
        try container.encode(addRecipients, forKey: .addRecipients)
        try container.encode(removeRecipients, forKey: .removeRecipients)
        try container.encode(envelopeFrom, forKey: .envelopeFrom)
        try container.encode(headerChanges, forKey: .headerChanges)
        try container.encode(refusedRecipients, forKey: .refusedRecipients)
        try container.encode(reasons, forKey: .reasons)
    }

    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(self) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    public func text() -> String {
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
