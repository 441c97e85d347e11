import Foundation
import Logging
import Milter
import ShareMail

/// One Postfix milter connection: gathers the facts stage by stage and asks
/// the engine. It only translates; every rule lives in `PolicyEngine`.
final class ShareMailSession: MilterSession {
    private let policy: PolicyStore
    private let metrics: ShareMailMetrics?
    private let memory: Memory?
    private let logger: Logger

    // Connection
    private var channel: Submission.Channel = .smtp
    private var client: IPAddress?

    // Message: reset after end of message and on abort.
    private var engine: PolicyEngine?
    private var submission = Submission(channel: .smtp)
    private var sender = EnvelopeAddress(written: "", resolved: nil)
    private var smtpUTF8 = false
    private var recipients: [EnvelopeAddress] = []
    private var headers: [Header] = []
    /// Reading a bounce's body for the Message-ID it quotes (only with a
    /// conversation memory, which is what needs it).
    private var bounce: BounceScanner?
    private var bodyChecked = false
    /// What the memory is to record once the outcome's changes are applied.
    private var unrecorded: (decision: Decision, facts: MessageFacts, queueID: String)?

    init(policy: PolicyStore, metrics: ShareMailMetrics?, memory: Memory?, logger: Logger) {
        self.policy = policy
        self.metrics = metrics
        self.memory = memory
        self.logger = logger
    }

    func connect(hostname: String, client: ClientAddress?, context: any MilterContext) -> Verdict {
        // Postfix presents mail from the sendmail command as a connection
        // from localhost [127.0.0.1] port 0: no SMTP client has port 0.
        if let client, client.port == 0, hostname == "localhost", client.ip == "127.0.0.1" || client.ip == "::1" {
            channel = .local
            self.client = nil
        } else {
            channel = .smtp
            self.client = client.flatMap { IPAddress($0.ip) }
        }
        return .continue
    }

    func mailFrom(_ arguments: [String], context: any MilterContext) -> Verdict {
        resetMessage()
        engine = policy.snapshot()
        submission = Submission(channel: channel, login: context.macro("{auth_authen}"), clientAddress: client)
        sender = Self.envelopeAddress(arguments, resolved: context.macro("{mail_addr}"))
        smtpUTF8 = sender.parameters.contains { $0.uppercased() == "SMTPUTF8" }
        return .continue
    }

    /// An envelope address from a MAIL or RCPT command and Postfix's own
    /// resolution of it (`{mail_addr}`, `{rcpt_addr}`). Postfix may leave the
    /// macro out for the null sender, which needs no resolving.
    static func envelopeAddress(_ arguments: [String], resolved: String?) -> EnvelopeAddress {
        let written = arguments.first ?? ""
        let null = written == "<>" || written.isEmpty
        return EnvelopeAddress(
            written: written, resolved: resolved ?? (null ? "" : nil),
            parameters: Array(arguments.dropFirst()))
    }

    func recipient(_ arguments: [String], context: any MilterContext) -> Verdict {
        guard let engine, !arguments.isEmpty else {
            return .tempfail(Self.internalError)
        }
        let mailer = context.macro("{rcpt_mailer}")
        var recipient = Self.envelopeAddress(arguments, resolved: context.macro("{rcpt_addr}"))
        recipient.mailer = mailer
        let verdict = engine.checkRecipient(recipient, submission: submission, sender: sender)
        // A recipient Postfix refused itself comes with `{rcpt_mailer}`
        // "error" and its reply text in place of `{rcpt_addr}`: Postfix's
        // reply stands. (An accepted recipient of the error transport has
        // its address there, and is judged like any other.)
        if case .tempfail = verdict, mailer == "error" { return .continue }
        switch verdict {
        case .accept:
            recipients.append(recipient)
            return .continue
        case .reject(let reply, let reason):
            metrics?.rejectedRecipients.increment()
            logger.info(
                "NOQUEUE: recipient refused",
                metadata: [
                    "from": "\(sender)", "to": "\(recipient)", "login": "\(submission.login ?? "")",
                    "reply": "\(reply)", "reason": "\(reason)",
                ])
            return .reject(Self.reply(reply))
        case .tempfail(let reply, let reason):
            logger.warning(
                "NOQUEUE: recipient deferred",
                metadata: [
                    "from": "\(sender)", "to": "\(recipient)", "login": "\(submission.login ?? "")",
                    "reply": "\(reply)", "reason": "\(reason)",
                ])
            return .tempfail(Self.reply(reply))
        }
    }

    func header(name: String, value: [UInt8], context: any MilterContext) -> Verdict {
        headers.append(Header(name: name, raw: value))
        return .continue
    }

    func body(_ chunk: UnsafeRawBufferPointer, context: any MilterContext) -> Verdict {
        if !bodyChecked {
            bodyChecked = true
            if memory != nil, BounceScanner.wants(sender: sender, headers: headers) { bounce = BounceScanner() }
        }
        guard bounce != nil else { return .skip }
        bounce!.feed(chunk)
        return bounce!.wantsMore ? .continue : .skip
    }

    func endOfMessage(context: any MilterContext) -> MessageOutcome {
        defer { resetMessage() }
        let queueID = context.macro("i") ?? "NOQUEUE"
        guard let engine else {
            logger.error("\(queueID): end of message without MAIL FROM: deferring")
            metrics?.countTempfail(.internet)
            return MessageOutcome(verdict: .tempfail(Self.internalError))
        }
        var facts = MessageFacts(
            submission: submission, sender: sender, recipients: recipients, headers: headers,
            smtpUTF8: smtpUTF8, uniqueToken: "\(UUID().uuidString.lowercased()).sharemail")
        if let memory {
            facts.bodyMessageIDs = bounce?.messageIDs ?? []
            let queries = engine.memoryQueries(facts)
            if let recalled = memory.recall(queries) {
                facts.memory = recalled
                // Round-robin: only a message that starts a conversation takes a turn.
                let turns = engine.turnRequests(facts)
                if !turns.isEmpty {
                    if let taken = memory.takeTurns(turns) {
                        for (mailbox, staff) in taken { facts.memory[mailbox, default: ConversationMemory()].turn = staff }
                    } else {
                        facts.memoryUnavailable = true
                    }
                }
            } else {
                facts.memoryUnavailable = true
            }
        }
        let started = ContinuousClock.now
        let decision = engine.decide(facts)
        let elapsed = ContinuousClock.now - started
        if memory != nil { unrecorded = (decision, facts, queueID) }
        metrics?.decisionTime.recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        metrics?.count(decision)
        log(decision, queueID: queueID)
        return Self.outcome(decision)
    }

    /// Only now is what the message did true: a change the MTA refused
    /// deferred the message, and nothing of it may be remembered.
    func outcomeApplied() {
        if let (decision, facts, queueID) = unrecorded { memory?.record(decision, facts: facts, queueID: queueID) }
        unrecorded = nil
    }

    func abort() {
        unrecorded = nil
        resetMessage()
    }

    func close() {
        unrecorded = nil
        resetMessage()
    }

    private func resetMessage() {
        engine = nil
        sender = EnvelopeAddress(written: "", resolved: nil)
        smtpUTF8 = false
        recipients.removeAll(keepingCapacity: true)
        headers.removeAll(keepingCapacity: true)
        bounce = nil
        bodyChecked = false
    }

    /// One line per message, starting with the Postfix queue id as Postfix's
    /// own lines do, so `grep QUEUEID mail.log` shows both together. Only the
    /// envelope and what changed: never a body or a header value.
    private func log(_ decision: Decision, queueID: String) {
        var metadata: Logger.Metadata = [
            "channel": "\(submission.channel.rawValue)",
            "from": "\(sender)",
            "rcpt": "\(recipients.map(\.description).joined(separator: ","))",
            "role": "\(decision.role.logName)",
            "action": "\(decision.action.logText)",
            "rule": "\(decision.rule)",
        ]
        if let login = submission.login { metadata["login"] = "\(login)" }
        if !decision.addRecipients.isEmpty { metadata["added"] = "\(decision.addRecipients.map(\.value).joined(separator: ","))" }
        if !decision.removeRecipients.isEmpty { metadata["removed"] = "\(decision.removeRecipients.joined(separator: ","))" }
        if let sender = decision.envelopeSender { metadata["new_from"] = "\(sender)" }
        if !decision.away.isEmpty { metadata["away"] = "\(decision.away.map(\.value).joined(separator: ","))" }
        if !decision.headerChanges.isEmpty {
            // A message may change hundreds of headers: the line names the first few.
            let shown = decision.headerChanges.prefix(12).map { "\($0.operation.rawValue):\($0.name)" }
            let more = decision.headerChanges.count - shown.count
            metadata["headers"] = "\(shown.joined(separator: ","))\(more > 0 ? ",+\(more) more" : "")"
        }
        logger.info("\(queueID): decision", metadata: metadata)
        logger.debug("\(queueID): reasons", metadata: ["reasons": "\(decision.reasons.joined(separator: "; "))"])
    }

    // MARK: Translation to the milter layer

    static let internalError = Reply(
        code: 451, enhancedCode: "4.3.0",
        text: "sharemail could not decide on this message; try again later")

    static func reply(_ reply: SMTPReply) -> Reply {
        Reply(code: reply.code, enhancedCode: reply.enhancedCode, text: reply.text)
    }

    static func outcome(_ decision: Decision) -> MessageOutcome {
        switch decision.action {
        case .reject(let reply):
            return MessageOutcome(verdict: .reject(Self.reply(reply)))
        case .tempfail(let reply):
            return MessageOutcome(verdict: .tempfail(Self.reply(reply)))
        case .accept:
            var changes: [Modification] = decision.headerChanges.map { change in
                switch change.operation {
                case .add: .addHeader(name: change.name, value: change.value ?? "")
                case .change:
                    if let raw = change.raw {
                        .changeHeaderBytes(name: change.name, occurrence: change.occurrence, value: raw)
                    } else {
                        .changeHeader(name: change.name, occurrence: change.occurrence, value: change.value)
                    }
                case .delete: .changeHeader(name: change.name, occurrence: change.occurrence, value: nil)
                }
            }
            if let sender = decision.envelopeSender { changes.append(.changeSender(sender.value)) }
            changes += decision.removeRecipients.map(Modification.deleteRecipient)
            for recipient in decision.strippedRecipients {
                changes.append(.deleteRecipient(recipient.written))
                changes.append(.addRecipient("<\(recipient.resolved ?? recipient.written)>"))
            }
            changes += decision.addRecipients.map { .addRecipient("<\($0.value)>") }
            return MessageOutcome(verdict: .continue, modifications: changes)
        }
    }
}
