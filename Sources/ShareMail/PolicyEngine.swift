import MailHeaders

/// The shared-mailbox rules. Facts in, decision out: no I/O, no C, no
/// clock, no randomness, so the daemon and `sharemail check` give the same
/// answer for the same mail.
///
/// The rules (numbers as in the README):
///  1. Internet → unified address: the manager gets it (the unified
///     recipient is replaced by the manager); with `forward_unnamed`, every
///     staff too.
///  2. Internet → a staff address: refused at RCPT unless the staff may
///     receive Internet mail; then the manager is added.
///  3. Staff → Internet: refused when the staff may not send; otherwise From
///     becomes `"Name" <unified>`, the envelope sender the unified address,
///     the manager is added, and no staff address is left in the headers.
///  4. Internet → `"Name" <unified>` in To/Cc: the manager and that staff only.
///  5. Mail among local addresses passes untouched.
///  6. Only configured addresses are ever added.
public struct PolicyEngine: Sendable {
    public let directory: Directory
    let decoder: HeaderDecoder
    /// Finds staff addresses in any shape: encoded, quoted, folded, with an
    /// extension, glued to a prefix ("%", "=", "+", …), in a list's bounce
    /// address. It folds Postfix's recipient_delimiter, and "+" whatever
    /// Postfix does: `zhangsan+x@` names Zhangsan to any reader.
    let scanner: AddressScanner

    public init(configuration: Configuration) {
        directory = Directory(configuration)
        decoder = HeaderDecoder(fallbackCharset: configuration.headerFallbackCharset)
        let delimiters =
            configuration.recipientDelimiter.contains("+")
            ? configuration.recipientDelimiter : configuration.recipientDelimiter + "+"
        scanner = AddressScanner(extensionDelimiters: delimiters)
    }

    public var configuration: Configuration { directory.configuration }

    // MARK: Who is sending

    /// Classifies the sender. A From header never counts: only the SASL
    /// login, or the envelope sender (as Postfix resolved it) of local and
    /// trusted submissions.
    public func role(of submission: Submission, sender: EnvelopeAddress) -> (SenderRole, String) {
        let envelope = address(of: sender)
        if let login = submission.login {
            if let staff = directory.staff(login: login) {
                return (.staff(staff), "authenticated as \(login): staff \(directory.staff(staff).name) of \(directory.mailbox(staff).address)")
            }
            return (.internal, "authenticated as \(login), not a staff login: internal mail")
        }
        let how: String
        switch submission.channel {
        case .local:
            how = "submitted on this host"
        case .smtp:
            guard let client = submission.clientAddress, directory.isTrusted(client) else {
                if let envelope, directory.staff(address: envelope) != nil {
                    return (.internet, "envelope sender \(envelope) is a staff address but the client is not authenticated or trusted: Internet mail")
                }
                return (.internet, "unauthenticated client: Internet mail")
            }
            how = "trusted client \(client)"
        }
        if let envelope, let staff = directory.staff(address: envelope) {
            return (.staff(staff), "\(how) with staff envelope sender \(envelope): staff \(directory.staff(staff).name)")
        }
        return (.internal, "\(how): internal mail")
    }

    // MARK: RCPT

    /// Rule 2 (and rule 3's refusals for SMTP): answers one RCPT TO, on
    /// the address as Postfix resolved it.
    public func checkRecipient(_ recipient: EnvelopeAddress, submission: Submission, sender: EnvelopeAddress) -> RecipientVerdict {
        if sender.resolved == nil {
            return .tempfail(PolicyEngine.cannotPlaceSender, reason: "the sender \(sender) has no resolved address sharemail can place")
        }
        let (role, _) = self.role(of: submission, sender: sender)
        switch (role, kind(of: recipient)) {
        case (_, .unplaced):
            return .tempfail(PolicyEngine.cannotPlace, reason: "\(recipient) has no resolved address sharemail can place")
        case (.internet, .staff(let reference)):
            let staff = directory.staff(reference)
            guard !staff.receiveInternet else { return .accept }
            let unified = directory.mailbox(reference).address
            return .reject(
                SMTPReply(
                    code: 550, enhancedCode: "5.7.1",
                    text: "\(staff.address) does not accept mail from the Internet; write to \(unified)"),
                reason: "rule 2: \(staff.address) may not receive Internet mail")
        case (.staff(let reference), .internet):
            // Mail from the sendmail command is refused at end of message:
            // Postfix treats a non-SMTP RCPT reject as a broken milter.
            guard submission.channel == .smtp else { return .accept }
            let staff = directory.staff(reference)
            guard staff.sendInternet else {
                return .reject(refusedToSend(staff, reference), reason: "rule 3: \(staff.name) may not send to the Internet")
            }
            if let reply = envelopeIDRefusal(sender) {
                return .reject(reply, reason: "rule 3: ENVID names a staff address")
            }
            return .accept
        default:
            return .accept
        }
    }

    // MARK: End of message

    public func decide(_ facts: MessageFacts) -> Decision {
        let (role, why) = self.role(of: facts.submission, sender: facts.sender)
        var plan = Plan(facts: facts, role: role, directory: directory)
        plan.reason(why)
        // Over SMTP such a recipient was deferred at RCPT; mail from the
        // sendmail command is answered here.
        let unplaced = facts.recipients.filter { kind(of: $0) == .unplaced }
        guard unplaced.isEmpty, facts.sender.resolved != nil else {
            let what = facts.sender.resolved == nil ? [facts.sender] : unplaced
            plan.decision.action = .tempfail(facts.sender.resolved == nil ? PolicyEngine.cannotPlaceSender : PolicyEngine.cannotPlace)
            plan.decision.rule = "unplaced"
            plan.reason("\(what.map(\.description).joined(separator: ", ")): no resolved address sharemail can place: deferred")
            return plan.decision
        }
        switch role {
        case .internet:
            routeInbound(&plan)
        case .staff(let reference):
            routeOutbound(&plan, staff: reference)
        case .internal:
            plan.decision.rule = "internal"
            plan.reason("rule 5: internal mail passes untouched")
            noteRedirect(&plan)
        }
        return plan.decision
    }

    /// Rules 1, 2 and 4, for mail from the Internet.
    private func routeInbound(_ plan: inout Plan) {
        var named: [Int: [StaffReference]]?  // mailbox → staff named in To/Cc, read once
        for recipient in plan.facts.recipients {
            switch kind(of: recipient) {
            case .unified(let m):
                let mailbox = directory.configuration.mailboxes[m]
                plan.decision.mailbox = plan.decision.mailbox ?? mailbox.address
                if mailbox.manager != mailbox.address {
                    plan.remove(recipient)
                    plan.add(mailbox.manager)
                    plan.reason("rule 1: \(mailbox.address) is delivered to the manager \(mailbox.manager)")
                } else {
                    plan.reason("rule 1: \(mailbox.address) is its own manager mailbox")
                }
                if named == nil { named = namedStaff(in: plan.facts.headers, plan: &plan) }
                let (staff, rule) = chooseStaff(mailbox: m, named: named?[m] ?? [], plan: &plan)
                for reference in staff { plan.add(directory.staff(reference).address) }
                plan.decision.staff += staff.map { directory.staff($0).address }
                plan.decision.rule = rule
                noteWaiting(&plan, mailbox: mailbox, staff: staff, rule: rule)
            case .staff(let reference):
                let staff = directory.staff(reference)
                let mailbox = directory.mailbox(reference)
                plan.decision.mailbox = plan.decision.mailbox ?? mailbox.address
                if staff.receiveInternet {
                    plan.add(mailbox.manager)
                    plan.decision.staff.append(staff.address)
                    plan.decision.rule = plan.decision.rule.isEmpty ? "direct" : plan.decision.rule
                    plan.reason("rule 2: \(staff.address) may receive Internet mail; the manager \(mailbox.manager) gets a copy")
                } else {
                    // Refused at RCPT already; should it reach here anyway
                    // (a milter restart between RCPT and DATA), drop it.
                    plan.remove(recipient)
                    plan.reason("rule 2: \(staff.address) may not receive Internet mail: recipient dropped")
                }
            case .local, .internet, .unplaced:
                continue
            }
        }
        if !plan.decision.changesMessage {
            plan.decision.rule = "untouched"
            plan.reason("no shared-mailbox recipient: passes untouched")
        }
    }

    /// Which staff of mailbox `m` get a message for its unified address, in
    /// this order: an explicit reassignment; the owner of the thread it
    /// answers; then auto-generated mail goes to the manager only; the staff
    /// its To/Cc names; with sticky_customers, the staff who last wrote to
    /// the customer; then the unnamed rule.
    private func chooseStaff(mailbox m: Int, named: [StaffReference], plan: inout Plan) -> ([StaffReference], String) {
        let mailbox = directory.configuration.mailboxes[m]
        let memory = plan.facts.memory[mailbox.address]
        if plan.facts.memoryUnavailable {
            plan.reason("conversation memory did not answer in time: routing by names")
        }
        if let reference = member(memory?.assigned, of: m) {
            plan.reason("assigned: this thread or customer is assigned to \(directory.staff(reference).name)")
            return (covering([reference], plan: &plan), "assigned")
        }
        if let reference = member(memory?.threadOwner, of: m) {
            plan.reason("thread: answers a message \(directory.staff(reference).name) sent: \(directory.staff(reference).name) only")
            return (covering([reference], plan: &plan), "thread")
        }
        // Auto-generated mail (bounces, auto-replies, lists) belongs to its
        // thread or to the manager: a name or a sticky customer is not
        // enough to put it in a staff's inbox.
        if let why = autoGenerated(plan.facts) {
            plan.reason("auto-generated (\(why)), in no known thread: manager only")
            return ([], "auto")
        }
        if !named.isEmpty {
            plan.reason("rule 4: named staff only: \(named.map { directory.staff($0).name }.joined(separator: ", "))")
            return (covering(named, plan: &plan), "named")
        }
        if mailbox.stickyCustomers, let reference = member(memory?.lastStaff, of: m) {
            plan.reason("sticky: \(directory.staff(reference).name) wrote to this customer last")
            return (covering([reference], plan: &plan), "sticky")
        }
        switch mailbox.unnamed {
        case .all:
            let present = mailbox.staff.indices.filter { !mailbox.staff[$0].away }
            let away = mailbox.staff.count - present.count
            plan.reason(
                "rule 1: no staff named; forward_unnamed copies to all \(present.count) staff of \(mailbox.address)"
                    + (away > 0 ? " (\(away) away)" : ""))
            return (present.map { StaffReference(mailbox: m, staff: $0) }, "unnamed")
        case .roundRobin:
            return roundRobin(mailbox: m, plan: &plan)
        case .manager:
            plan.reason("rule 1: no staff named; forward_unnamed is off: manager only")
            return ([], "unnamed")
        }
    }

    /// Round-robin: a message that starts a conversation goes to the staff
    /// whose turn the memory gave it. Without a turn (the memory off, slow,
    /// or not asked yet: `turnRequests`) the manager alone gets it, as a
    /// message nobody can place would.
    private func roundRobin(mailbox m: Int, plan: inout Plan) -> ([StaffReference], String) {
        let mailbox = directory.configuration.mailboxes[m]
        let available = mailbox.staff.filter { !$0.away }.map(\.address)
        guard !available.isEmpty else {
            plan.reason("round-robin: every staff of \(mailbox.address) is away: manager only")
            return ([], "unnamed")
        }
        if let reference = member(plan.facts.memory[mailbox.address]?.turn, of: m), !directory.staff(reference).away {
            let staff = directory.staff(reference)
            plan.reason("round-robin: a new conversation, \(staff.name)'s turn")
            // The customer's message opens the thread: their next message in it,
            // and answers to the staff's reply, follow it to the same staff.
            if let customer = address(of: plan.facts.sender), let messageID = messageID(of: plan.facts) {
                plan.decision.memoryUpdates.append(
                    .turnGiven(
                        messageID: messageID, staff: staff.address,
                        mailbox: mailbox.address, customer: customer))
            }
            return ([reference], "round-robin")
        }
        plan.turnRequests.append(TurnRequest(mailbox: mailbox.address, order: mailbox.staff.map(\.address), available: available))
        plan.reason(
            plan.facts.memoryUnavailable
                ? "round-robin: the conversation memory, which holds the turn, did not answer: manager only"
                : "round-robin: a new conversation goes to the staff whose turn it is; no turn was taken (sharemail check takes none): manager only")
        return ([], "unnamed")
    }

    /// Mail for a staff who is away goes to their backup (and, as all
    /// mail, to the manager); without a backup, to the manager alone.
    private func covering(_ chosen: [StaffReference], plan: inout Plan) -> [StaffReference] {
        guard chosen.contains(where: { directory.staff($0).away }) else { return chosen }
        var result: [StaffReference] = []
        for reference in chosen {
            let staff = directory.staff(reference)
            guard staff.away else {
                if !result.contains(reference) { result.append(reference) }
                continue
            }
            plan.decision.away.append(staff.address)
            if let backup = directory.backup(of: reference), !directory.staff(backup).away {
                plan.reason("away: \(staff.name) is away: to the manager and the backup \(directory.staff(backup).name)")
                if !result.contains(backup) { result.append(backup) }
            } else {
                plan.reason("away: \(staff.name) is away and has no backup: manager only")
            }
        }
        return result
    }

    /// A customer's message (not auto-generated) to a unified address waits
    /// for a staff's answer: the memory keeps it for `sharemail pending`.
    private func noteWaiting(_ plan: inout Plan, mailbox: SharedMailbox, staff: [StaffReference], rule: String) {
        guard rule != "auto", let customer = address(of: plan.facts.sender) else { return }
        let subject =
            plan.facts.headers.first { $0.name.caseInsensitiveEquals("Subject") }
            .map { Substring(decoder.unstructured(decoder.text(fromRaw: $0.raw))).trimmingSpaces } ?? ""
        plan.decision.memoryUpdates.append(
            .customerWrote(
                customer: customer, mailbox: mailbox.address,
                staff: staff.count == 1 ? directory.staff(staff[0]).address : nil, subject: String(subject)))
    }

    /// The Message-ID of the message itself, without <>.
    private func messageID(of facts: MessageFacts) -> String? {
        facts.headers.lazy.filter { $0.name.caseInsensitiveEquals("Message-ID") }
            .compactMap { MessageIDs.parse(self.decoder.text(fromRaw: $0.raw)).first }.first
    }

    /// The round-robin turns a message needs before `decide`: one per
    /// round-robin mailbox where it starts a conversation (no assignment,
    /// thread, name or sticky customer places it; not auto-generated). Ask
    /// after the memory's lookups are in `facts.memory`; most messages need
    /// none, and then the memory is not asked again.
    public func turnRequests(_ facts: MessageFacts) -> [TurnRequest] {
        guard directory.hasRoundRobin, case (.internet, _) = role(of: facts.submission, sender: facts.sender) else { return [] }
        var plan = Plan(facts: facts, role: .internet, directory: directory)
        routeInbound(&plan)
        return plan.turnRequests
    }

    /// The staff reference of `address` if it is staff of mailbox `m` (the
    /// memory may name someone since removed or moved).
    private func member(_ address: EmailAddress?, of m: Int) -> StaffReference? {
        guard let address, let reference = directory.staff(address: address), reference.mailbox == m else { return nil }
        return reference
    }

    /// Why the message is auto-generated (RFC 3834 and common practice), or
    /// nil for mail a person wrote.
    func autoGenerated(_ facts: MessageFacts) -> String? {
        if facts.sender.isNull { return "null envelope sender" }
        // The name first: only these headers' values are turned into text, not every Received.
        func value(_ header: Header) -> String {
            Substring(decoder.text(fromRaw: header.raw)).trimmingSpaces.lowercased()
        }
        for header in facts.headers {
            if header.name.caseInsensitiveEquals("Auto-Submitted") {
                let value = value(header)
                if !value.isEmpty && value != "no" && !value.hasPrefix("no;") && !value.hasPrefix("no ") {
                    return "Auto-Submitted: \(value)"
                }
            } else if header.name.caseInsensitiveEquals("Precedence") {
                let value = value(header)
                if ["bulk", "list", "junk"].contains(value) { return "Precedence: \(value)" }
            } else if header.name.caseInsensitiveEquals("X-Autoreply") || header.name.caseInsensitiveEquals("X-Autorespond") {
                return "\(header.name)"
            }
        }
        return nil
    }

    /// What to ask the conversation memory about an incoming message: one
    /// query per unified address it is for. Empty for anything but Internet
    /// mail to a unified address.
    public func memoryQueries(_ facts: MessageFacts) -> [MemoryQuery] {
        guard case (.internet, _) = role(of: facts.submission, sender: facts.sender) else { return [] }
        var ids: [String] = []
        var references: [String] = []
        for header in facts.headers {
            if header.name.caseInsensitiveEquals("In-Reply-To") {
                ids += MessageIDs.parse(decoder.text(fromRaw: header.raw))
            } else if header.name.caseInsensitiveEquals("References") {
                references += MessageIDs.parse(decoder.text(fromRaw: header.raw))
            }
        }
        var seen = Set<String>()
        let all = (ids + references.reversed() + facts.bodyMessageIDs).filter { seen.insert($0).inserted }
        let customer = address(of: facts.sender)
        var queries: [MemoryQuery] = []
        for recipient in facts.recipients {
            if case .unified(let m) = kind(of: recipient) {
                let mailbox = directory.configuration.mailboxes[m]
                if !queries.contains(where: { $0.mailbox == mailbox.address }) {
                    queries.append(
                        MemoryQuery(
                            mailbox: mailbox.address, messageIDs: all, customer: customer,
                            lastStaff: mailbox.stickyCustomers))
                }
            }
        }
        return queries
    }

    /// A manager who redirects (Resent-*) a customer's message to a staff
    /// assigns its thread to that staff. The message itself passes untouched.
    /// Only the manager may: authenticated with the manager's login, or
    /// submitted on this host or by a trusted client with the manager's
    /// envelope sender. A Resent-From header proves nothing: anybody can
    /// write one.
    private func noteRedirect(_ plan: inout Plan) {
        guard plan.facts.headers.contains(where: { $0.name.lowercased().hasPrefix("resent-") }) else { return }
        guard
            let messageID = plan.facts.headers.lazy
                .filter({ $0.name.caseInsensitiveEquals("Message-ID") })
                .compactMap({ MessageIDs.parse(decoder.text(fromRaw: $0.raw)).first }).first
        else { return }
        let managed: Set<Int>
        if let login = plan.facts.submission.login {
            managed = Set(directory.mailboxes(managedBy: login))
        } else if let sender = address(of: plan.facts.sender) {
            managed = Set(directory.configuration.mailboxes.indices.filter { directory.configuration.mailboxes[$0].manager == sender })
        } else {
            managed = []
        }
        for recipient in plan.facts.recipients {
            guard case .staff(let reference) = kind(of: recipient) else { continue }
            let mailbox = directory.mailbox(reference)
            guard managed.contains(reference.mailbox) else {
                plan.reason("redirect to \(directory.staff(reference).name) not by the manager of \(mailbox.address): no reassignment")
                continue
            }
            let staff = directory.staff(reference)
            plan.decision.memoryUpdates.append(.assignThread(messageID: messageID, staff: staff.address, mailbox: mailbox.address))
            plan.decision.rule = "redirect"
            plan.decision.staff.append(staff.address)
            plan.decision.mailbox = mailbox.address
            plan.reason("redirect: the manager passed this thread to \(staff.name)")
        }
    }

    /// The staff named by the display names of unified addresses in To and
    /// Cc, per mailbox, in the order written.
    private func namedStaff(in headers: [Header], plan: inout Plan) -> [Int: [StaffReference]] {
        var result: [Int: [StaffReference]] = [:]
        for header in headers where header.name.caseInsensitiveEquals("To") || header.name.caseInsensitiveEquals("Cc") {
            let list = decoder.addressList(decoder.text(fromRaw: header.raw))
            for mailbox in list.mailboxes {
                guard let address = EmailAddress(mailbox.address), let m = directory.mailbox(address: address),
                    let name = mailbox.displayName, !name.isEmpty
                else { continue }
                if let reference = directory.staff(named: name, inMailbox: m) {
                    if !(result[m] ?? []).contains(reference) {
                        result[m, default: []].append(reference)
                        plan.reason("\(header.name): \"\(name)\" <\(address)> names staff \(directory.staff(reference).name)")
                    }
                } else if NameNormalizer.normalize(name) != NameNormalizer.normalize(address.value) {
                    plan.reason("\(header.name): \"\(name)\" <\(address)> matches no staff of \(address)")
                }
            }
        }
        return result
    }

    /// Rule 3 and rule 5, for mail from a staff member.
    private func routeOutbound(_ plan: inout Plan, staff reference: StaffReference) {
        let staff = directory.staff(reference)
        let mailbox = directory.mailbox(reference)
        let external = plan.facts.recipients.filter { kind(of: $0) == .internet }
        let externalNames = external.map(\.description).joined(separator: ", ")
        plan.decision.staff = [staff.address]
        plan.decision.mailbox = mailbox.address
        guard !external.isEmpty else {
            plan.decision.rule = "local"
            plan.reason("rule 5: every recipient is local: passes untouched")
            return
        }
        plan.decision.rule = "staff-out"
        guard staff.sendInternet else {
            plan.decision.action = .reject(refusedToSend(staff, reference))
            plan.reason("rule 3: \(staff.name) may not send to the Internet (\(externalNames))")
            return
        }
        if let reply = envelopeIDRefusal(plan.facts.sender) {
            plan.decision.action = .reject(reply)
            plan.reason("rule 3: the ENVID parameter names a staff address, and Postfix passes no change of it")
            return
        }
        plan.reason("rule 3: \(staff.name) writes to the Internet (\(externalNames)): sent as \(mailbox.address)")

        if !plan.facts.sender.isNull {
            plan.decision.envelopeSender = mailbox.address
        }
        // An ORCPT naming the staff would travel with the recipient to the
        // Internet; Postfix keeps no ESMTP parameter of a recipient a milter
        // adds, so the recipient is removed and added back without it.
        for recipient in external {
            guard let orcpt = recipient.parameter("ORCPT"),
                staffMentioned(in: EnvelopeAddress.xtextDecoded(orcpt)) != nil
            else { continue }
            plan.decision.strippedRecipients.append(recipient)
            plan.reason("rule 3: the ORCPT of \(recipient.written) names a staff address: the recipient is added back without it")
        }
        // A unified address among the recipients (the staff copied the
        // team) is delivered to its manager, as for Internet mail: one copy,
        // whatever Postfix's alias maps say.
        for recipient in plan.facts.recipients {
            guard case .unified(let m) = kind(of: recipient) else { continue }
            let other = directory.configuration.mailboxes[m]
            if other.manager != other.address {
                plan.remove(recipient)
                plan.add(other.manager)
            }
        }
        plan.add(mailbox.manager)
        plan.reason("rule 3: the manager \(mailbox.manager) keeps a copy")
        let messageID = rewriteHeaders(&plan, staff: staff, mailbox: mailbox)
        let changed = plan.decision.headerChanges.count { $0.operation == .change }
        guard changed <= PolicyEngine.maximumChangedHeaders else {
            plan.decision = Decision(action: .reject(PolicyEngine.tooManyChangedHeaders(changed)), role: plan.decision.role)
            plan.decision.rule = "staff-out"
            plan.decision.staff = [staff.address]
            plan.decision.mailbox = mailbox.address
            plan.reason(
                "rule 3: \(changed) headers name a staff address; Postfix cannot store more than \(PolicyEngine.maximumChangedHeaders) changed headers: refused"
            )
            return
        }
        plan.decision.memoryUpdates.append(
            .sent(
                messageID: messageID, staff: staff.address, mailbox: mailbox.address,
                customers: external.compactMap(address(of:))))
    }

    /// Postfix stores a changed header as a jump to its new copy and a jump
    /// back, and finds each next header to change by walking from the top:
    /// changing n headers costs about n²/2 backward jumps, and cleanup gives
    /// up past 10,000 (REVERSE_JUMP_LIMIT) with "queue file write error", a
    /// 4xx the client would retry forever. 100 stays well inside.
    public static let maximumChangedHeaders = 100

    static func tooManyChangedHeaders(_ count: Int) -> SMTPReply {
        SMTPReply(
            code: 550, enhancedCode: "5.7.1",
            text: "\(count) headers name your own address; sharemail can hide it in at most \(maximumChangedHeaders): remove them and send again")
    }

    /// From becomes the unified address under the staff's name; Sender goes;
    /// headers that carry a personal key or signature go; every other staff
    /// address in the headers becomes its unified address. Returns the
    /// Message-ID the message leaves with.
    private func rewriteHeaders(_ plan: inout Plan, staff: Staff, mailbox: SharedMailbox) -> String {
        let smtpUTF8 = plan.facts.smtpUTF8
        let from = HeaderEncoder.mailbox(
            displayName: mailbox.fromName.render(staff.name), address: mailbox.address.value,
            smtpUTF8: smtpUTF8)
        var occurrences: [String: Int] = [:]
        var deletions: [HeaderChange] = []
        var sawFrom = false
        var messageID: String?

        for header in plan.facts.headers {
            let key = header.name.lowercased()
            let occurrence = occurrences[key, default: 0] + 1
            occurrences[key] = occurrence
            // Turned into text only for a header that changes (its old value, for reports) or
            // the Message-ID: most headers are left alone.
            func value() -> String { decoder.text(fromRaw: header.raw) }
            switch key {
            case "from":
                if occurrence == 1 {
                    sawFrom = true
                    plan.decision.headerChanges.append(
                        HeaderChange(
                            operation: .change, name: header.name, occurrence: 1,
                            value: HeaderEncoder.fold(name: header.name, value: from), oldValue: value()))
                } else {
                    deletions.append(HeaderChange(operation: .delete, name: header.name, occurrence: occurrence, value: nil, oldValue: value()))
                }
            case "sender":
                deletions.append(HeaderChange(operation: .delete, name: header.name, occurrence: occurrence, value: nil, oldValue: value()))
            case _ where PolicyEngine.personalKeyHeaders.contains(key):
                deletions.append(HeaderChange(operation: .delete, name: header.name, occurrence: occurrence, value: nil, oldValue: value()))
                plan.reason("rule 3: \(header.name) carries the staff's own key or signature: deleted")
            default:
                let rewritten = hidingStaffAddresses(
                    in: header.raw, structured: PolicyEngine.addressHeaders.contains(key),
                    smtpUTF8: smtpUTF8)
                if key == "message-id", messageID == nil {
                    messageID = MessageIDs.parse(rewritten.map { decoder.text(fromRaw: $0) } ?? value()).first
                }
                if let rewritten {
                    // Bytes that are not UTF-8 go out as they are; `value`
                    // then only shows them, decoded, in reports.
                    let text = String(validating: rewritten, as: UTF8.self)
                    plan.decision.headerChanges.append(
                        HeaderChange(
                            operation: .change, name: header.name, occurrence: occurrence,
                            value: text ?? decoder.text(fromRaw: rewritten), oldValue: value(),
                            raw: text == nil ? rewritten : nil))
                    plan.reason("rule 3: \(header.name) carried a staff address: rewritten")
                }
            }
        }
        if !sawFrom {
            plan.decision.headerChanges.append(.add("From", HeaderEncoder.fold(name: "From", value: from)))
        }
        // Delete the last occurrence first, so no deletion shifts the index
        // of another.
        plan.decision.headerChanges += deletions.sorted { $0.occurrence > $1.occurrence }
        if let messageID { return messageID }
        let added = "\(plan.facts.uniqueToken)@\(mailbox.address.domain)"
        plan.decision.headerChanges.append(.add("Message-ID", "<\(added)>"))
        plan.reason("rule 3: Message-ID was missing: added")
        return added
    }

    /// Headers whose values are address lists (RFC 5322 and common extensions).
    static let addressHeaders: Set<String> = [
        "to", "cc", "bcc", "reply-to", "resent-from", "resent-sender", "resent-to", "resent-cc", "resent-bcc",
        "resent-reply-to", "mail-reply-to", "mail-followup-to", "return-receipt-to", "disposition-notification-to",
        "errors-to", "return-path", "x-sender", "x-original-from",
    ]

    /// Headers that hold a key or signature made for the staff's own address
    /// (Autocrypt from Thunderbird and K-9, b4's patch attestation): rewriting
    /// the address would leave the key naming the staff, so they go.
    static let personalKeyHeaders: Set<String> = [
        "autocrypt", "autocrypt-gossip", "x-developer-key", "x-developer-signature",
    ]

    /// Replaces each staff address in a raw header value with that staff's
    /// public form: the whole mailbox becomes `"Name" <unified>` in address
    /// lists; anywhere else (and in what is left of a list: names, comments)
    /// the unified address takes the address's place. Bytes that carried no
    /// staff address are kept as they came, 8-bit text included. nil when the
    /// value carries no staff address.
    func hidingStaffAddresses(in raw: [UInt8], structured: Bool, smtpUTF8: Bool) -> [UInt8]? {
        // Fast path, most headers: nothing that can hold an address.
        guard AddressScanner.mayHoldAddress(raw) else { return nil }
        var bytes = raw
        var changed = false
        if structured {
            // Spell each staff address plainly first (no fold, quotes,
            // extension or subdomain), so the parser sees the mailbox whole.
            let plain =
                scanner.rewriting(raw) { address in
                    staffReference(matching: address).map { directory.staff($0).address.value }
                } ?? raw
            if let rewritten = decoder.rewritingMailboxes(
                inRaw: plain,
                { mailbox in
                    guard let address = scanner.normalize(mailbox.address),
                        let reference = staffReference(matching: address)
                    else { return nil }
                    return HeaderEncoder.mailbox(
                        displayName: directory.publicName(reference),
                        address: directory.mailbox(reference).address.value, smtpUTF8: smtpUTF8)
                })
            {
                bytes = rewritten
                changed = true
            }
        }
        if let rewritten = scanner.rewriting(
            bytes,
            { address in
                staffReference(matching: address).map { directory.mailbox($0).address.value }
            })
        {
            bytes = rewritten
            changed = true
        }
        return changed ? bytes : nil
    }

    /// The staff a normalised address (as the scanner hands it) stands for:
    /// a staff address; or, in a configured domain or a subdomain of one
    /// (`zhangsan@mx.example.com`), a local part that is the local part of a
    /// staff address in that domain, a staff's login, or the local part of a
    /// staff address in another configured domain. Dictionary lookups only,
    /// one per configured domain at most: cost does not grow with the number
    /// of staff.
    private func staffReference(matching normalized: String) -> StaffReference? {
        guard let address = EmailAddress(normalized) else { return nil }
        if let reference = directory.staff(address: address) { return reference }
        var home: Substring?
        var suffix = address.domain
        while home == nil {
            if directory.localDomains.contains(suffix) {
                home = suffix
                break
            }
            guard let dot = suffix.firstIndex(of: ".") else { break }
            suffix = suffix[suffix.index(after: dot)...]
        }
        guard let home else { return nil }
        let part = address.localPart
        func staff(in domain: Substring) -> StaffReference? {
            EmailAddress("\(part)@\(domain)").flatMap(directory.staff(address:))
        }
        if let reference = staff(in: home) { return reference }
        if let reference = directory.staff(login: String(part)) { return reference }
        // Sorted, so that the same mail is always rewritten the same way.
        return directory.localDomains.filter { $0 != home }.sorted().lazy.compactMap(staff(in:)).first
    }

    private func refusedToSend(_ staff: Staff, _ reference: StaffReference) -> SMTPReply {
        SMTPReply(
            code: 550, enhancedCode: "5.7.1",
            text: "\(staff.name) may not send mail to the Internet from \(directory.mailbox(reference).address)")
    }

    // MARK: Recipients

    enum RecipientKind: Equatable {
        case unified(Int)
        case staff(StaffReference)
        /// A configured manager address, any address in a local domain, or
        /// a bare local part Postfix delivers on this host.
        case local
        case internet
        /// Postfix gave no resolved address sharemail can read: deferred,
        /// never guessed.
        case unplaced
    }

    /// What a recipient is, by the address Postfix resolved it to, so that
    /// every form Postfix accepts (bang path, percent hack, quotes, trailing
    /// dot, bare local part, `+extension`) gets its plain form's verdict.
    func kind(of recipient: EnvelopeAddress) -> RecipientKind {
        guard let resolved = recipient.resolved, !resolved.isEmpty else { return .unplaced }
        guard resolved.utf8.contains(UInt8(ascii: "@")) else {  // a byte, not Foundation's substring search
            // With append_at_myorigin = no, Postfix delivers a bare local
            // part to a local account: never a staff or unified mailbox.
            return resolved.allSatisfy({ !$0.isWhitespace && $0 != "<" && $0 != ">" }) ? .local : .unplaced
        }
        guard let address = directory.canonical(resolved, mailer: recipient.mailer) else { return .unplaced }
        if let m = directory.mailbox(address: address) { return .unified(m) }
        if let staff = directory.staff(address: address) { return .staff(staff) }
        return directory.isLocal(address) ? .local : .internet
    }

    /// The address an envelope address resolved to, as sharemail compares
    /// it (extension folded in local domains); nil for the null sender and
    /// for what is not an address.
    func address(of envelope: EnvelopeAddress) -> EmailAddress? {
        envelope.resolved.flatMap { directory.canonical($0, mailer: envelope.mailer) }
    }

    /// An ENVID travels with the message to the Internet, and Postfix
    /// ignores the parameters of a milter's change of sender
    /// (cleanup_chg_from): one that names a staff is refused, with a reason
    /// the staff's client shows.
    private func envelopeIDRefusal(_ sender: EnvelopeAddress) -> SMTPReply? {
        guard let envid = sender.parameter("ENVID"), staffMentioned(in: EnvelopeAddress.xtextDecoded(envid)) != nil else { return nil }
        return SMTPReply(
            code: 550, enhancedCode: "5.7.1",
            text: "the ENVID parameter names a staff address and would reach the Internet; send without it")
    }

    /// A staff named in free text (a DSN parameter): by an address in any
    /// shape the header scanner knows, or by a login standing alone as a word.
    func staffMentioned(in text: String) -> StaffReference? {
        var found: StaffReference?
        _ = scanner.holdsAddress(Array(text.utf8)) { address in
            found = found ?? staffReference(matching: address)
            return found != nil
        }
        if let found { return found }
        // A login may itself hold dots or dashes (zhang.san): try every run
        // of a word's parts, so `abc.zhangsan` and `zhang.san-1` both count.
        for word in text.split(whereSeparator: { !($0.isLetter || $0.isNumber || "._-".contains($0)) }) {
            let parts = word.split(whereSeparator: { "._-".contains($0) })
            for first in parts.indices {
                for last in first..<min(parts.count, first + 4) {
                    let run = word[parts[first].startIndex..<parts[last].endIndex]
                    if let reference = directory.staff(login: String(run)) { return reference }
                }
            }
        }
        return nil
    }

    public static let cannotPlaceSender = SMTPReply(
        code: 451, enhancedCode: "4.3.0",
        text: "sharemail cannot place the sender address; try again later")

    public static let cannotPlace = SMTPReply(
        code: 451, enhancedCode: "4.3.0",
        text: "sharemail cannot place this recipient; try again later")
}

/// The decision being built, and what has been added or removed so far, so
/// that nobody gets two copies.
private struct Plan {
    let facts: MessageFacts
    let directory: Directory
    var decision: Decision
    /// The recipients the message has, by the address Postfix delivers to.
    var present: Set<EmailAddress>
    /// Round-robin turns the decision lacked (see `PolicyEngine.turnRequests`).
    var turnRequests: [TurnRequest] = []

    init(facts: MessageFacts, role: SenderRole, directory: Directory) {
        self.facts = facts
        self.directory = directory
        decision = Decision(action: .accept, role: role)
        present = Set(
            facts.recipients.compactMap { recipient in
                recipient.resolved.flatMap { directory.canonical($0, mailer: recipient.mailer) }
            })
    }

    mutating func add(_ address: EmailAddress) {
        if present.insert(address).inserted { decision.addRecipients.append(address) }
    }

    mutating func remove(_ recipient: EnvelopeAddress) {
        guard !decision.removeRecipients.contains(recipient.written) else { return }
        decision.removeRecipients.append(recipient.written)
        if let address = recipient.resolved.flatMap({ directory.canonical($0, mailer: recipient.mailer) }) {
            present.remove(address)
        }
    }

    mutating func reason(_ text: String) { decision.reasons.append(text) }
}
