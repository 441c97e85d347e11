import Foundation
import PostfixLab

/// The cases of the seed document with the team of sharemail.example.toml: sales@example.com,
/// manager@example.com, Zhangsan and Lisi, forward_unnamed = true, Zhangsan without
/// receive_internet. Each case tells its story, shows where its messages landed, and returns
/// what did not land as the seed says (empty: as expected).
final class Cases {
    let lab: Lab
    private var reported: Set<String> = []  // message files already shown by an earlier case
    private var logOffsets: (maillog: UInt64, sharemail: UInt64) = (0, 0)
    private var customerMessageID = ""  // case 1's, so the reply in case 2 refers to it
    private var replyMessageID: String?  // case 2's as it left, for case 3's In-Reply-To

    static let customer = "customer@customer.test"
    static let subject = "Question about your prices"

    init(lab: Lab) { self.lab = lab }

    var all: [(title: String, play: () throws -> [String])] {
        [
            ("Case 1: a customer writes to sales@example.com", customerWritesToSales),
            ("Case 1b: a customer writes straight to zhangsan@example.com", customerWritesToStaff),
            ("Case 2: Zhangsan (logged in) replies to the customer", staffReplies),
            ("Case 3: the customer replies to \"Zhangsan\" <sales@example.com>", customerRepliesToName),
            ("Case 3b: the customer answers the bare sales@example.com from a phone", customerRepliesFromPhone),
        ]
    }

    // MARK: The cases

    func customerWritesToSales() throws -> [String] {
        customerMessageID = "<\(tag())@customer.test>"
        let headers = [
            "From: Customer <\(Self.customer)>", "To: sales@example.com", "Subject: \(Self.subject)",
            "Message-ID: \(customerMessageID)",
        ]
        tell("The customer's mail client sends, from the Internet:", headers)
        let outcome = try send(as: .internet, from: Self.customer, to: ["sales@example.com"], headers: headers)
        let landed = try show()
        return verdict(
            expectAccepted(outcome) + expect(landed, maildirs: ["manager": 1, "zhangsan": 1, "lisi": 1], internet: 0),
            "the manager gets it, and with forward_unnamed = true every staff gets a copy")
    }

    func customerWritesToStaff() throws -> [String] {
        let headers = [
            "From: Customer <\(Self.customer)>", "To: zhangsan@example.com", "Subject: Directly to you",
            "Message-ID: <\(tag())@customer.test>",
        ]
        tell("The customer guesses Zhangsan's own address:", headers)
        let outcome = try send(as: .internet, from: Self.customer, to: ["zhangsan@example.com"], headers: headers)
        let landed = try show()
        var problems: [String] = []
        if let refusal = outcome.firstRefusal {
            if !(refusal.code == 550 && refusal.text.hasPrefix("5.7.1")) {
                problems.append("expected a 550 5.7.1 refusal at RCPT TO, Postfix said \(refusal)")
            }
        } else {
            problems.append("expected a 550 5.7.1 refusal at RCPT TO, but Postfix accepted the message")
        }
        return verdict(
            problems + expect(landed, maildirs: [:], internet: 0),
            "Zhangsan has receive_internet = false: refused at RCPT, nobody gets it")
    }

    func staffReplies() throws -> [String] {
        let headers = [
            #"From: "Zhangsan" <zhangsan@example.com>"#,
            "Reply-To: zhangsan@example.com",
            "Disposition-Notification-To: zhangsan@example.com",
            "To: Customer <\(Self.customer)>",
            "Subject: Re: \(Self.subject)",
            "In-Reply-To: \(customerMessageID)",
            "Message-ID: <\(tag())@example.com>",
        ]
        tell("Zhangsan logs in as \"zhangsan\" and sends, with MAIL FROM:<zhangsan@example.com>:", headers)
        let outcome = try send(
            as: .staff(login: "zhangsan"), from: "zhangsan@example.com", to: [Self.customer], headers: headers,
            body: "Dear customer,\r\nthe prices are attached.\r\nRegards,\r\nZhangsan")
        let landed = try show(internetHeaders: ["From", "Reply-To", "Disposition-Notification-To", "Message-ID"])

        var problems = expectAccepted(outcome) + expect(landed, maildirs: ["manager": 1], internet: 1)
        if let sent = landed.internet.first {
            replyMessageID = sent.file.value("Message-ID")
            let from = sent.file.value("From") ?? ""
            if from != #""Zhangsan" <sales@example.com>"# && from != "Zhangsan <sales@example.com>" {
                problems.append("the customer sees From: \(from), expected \"Zhangsan\" <sales@example.com>")
            }
            if sent.envelopeSender != "sales@example.com" {
                problems.append("the envelope sender on the way out is \(sent.envelopeSender), expected sales@example.com")
            }
            let leaks = sent.file.text.split(separator: "\n").filter { $0.lowercased().contains("zhangsan@example.com") }
            if leaks.isEmpty {
                say("        zhangsan@example.com appears nowhere in it (envelope, headers, body).")
            } else {
                problems.append("zhangsan@example.com leaked to the Internet:\n" + leaks.joined(separator: "\n"))
            }
        }
        return verdict(problems, "the customer gets it from \"Zhangsan\" <sales@example.com>, the manager keeps a copy")
    }

    func customerRepliesToName() throws -> [String] {
        var headers = [
            "From: Customer <\(Self.customer)>", #"To: "Zhangsan" <sales@example.com>"#,
            "Subject: Re: Re: \(Self.subject)", "Message-ID: <\(tag())@customer.test>",
        ]
        if let replyMessageID { headers.append("In-Reply-To: \(replyMessageID)") }
        tell("The customer presses Reply on Zhangsan's message:", headers)
        let outcome = try send(as: .internet, from: Self.customer, to: ["sales@example.com"], headers: headers)
        let landed = try show()
        return verdict(
            expectAccepted(outcome) + expect(landed, maildirs: ["manager": 1, "zhangsan": 1], internet: 0),
            "the name \"Zhangsan\" routes it to Zhangsan and the manager only, not Lisi")
    }

    /// No name anywhere, only In-Reply-To: the conversation memory (on by default) knows
    /// that Zhangsan wrote the message it answers.
    func customerRepliesFromPhone() throws -> [String] {
        guard let replyMessageID else { return ["case 2 sent nothing to answer"] }
        let headers = [
            "From: <\(Self.customer)>", "To: sales@example.com",
            "Subject: Re: \(Self.subject)", "Message-ID: <\(tag())@phone.customer.test>",
            "In-Reply-To: \(replyMessageID)",
        ]
        tell("The customer's phone answers Zhangsan's message, naming nobody:", headers)
        let outcome = try send(
            as: .internet, from: Self.customer, to: ["sales@example.com"], headers: headers,
            body: "OK, I take two.\r\nSent from my phone")
        let landed = try show()
        return verdict(
            expectAccepted(outcome) + expect(landed, maildirs: ["manager": 1, "zhangsan": 1], internet: 0),
            "the memory (state left at its default) knows Zhangsan wrote the message it answers: Zhangsan and the manager, not Lisi")
    }

    // MARK: Sending and looking

    private func tell(_ story: String, _ headers: [String]) {
        say("  " + story)
        for header in headers { say("      " + header) }
    }

    private func send(
        as identity: SMTPIdentity, from sender: String, to recipients: [String], headers: [String],
        body: String = "Hello,\r\nwhat do your products cost?\r\nA customer"
    ) throws -> SMTPOutcome {
        logOffsets = (lab.postfix.maillogOffset(), lab.sharemail?.logOffset() ?? 0)
        let outcome = try lab.sendAndDeliver(
            as: identity, from: sender, to: recipients, message: message(headers, body: body))
        if let refusal = outcome.firstRefusal {
            say("  Postfix refused it: \(refusal)")
        } else if let data = outcome.data {
            say("  Postfix accepted it: \(data)")
        }
        return outcome
    }

    /// What one case left: the message files that appeared since the previous case.
    struct Landed {
        var maildirs: [String: [MailMessage]] = [:]  // only mailboxes that got something
        var internet: [Sink.Message] = []
    }

    /// Collects and prints what landed where since the previous case.
    private func show(internetHeaders: [String] = ["From"]) throws -> Landed {
        var landed = Landed()
        for mailbox in PostfixInstance.mailboxes {
            let new = try lab.maildirs.messages(mailbox).filter { reported.insert($0.path).inserted }
            if !new.isEmpty { landed.maildirs[mailbox] = new }
        }
        landed.internet = try lab.sink.messages().filter { reported.insert($0.file.path).inserted }

        if landed.maildirs.isEmpty && landed.internet.isEmpty {
            say("  Landed: nowhere.")
            return landed
        }
        say("  Landed:")
        for mailbox in PostfixInstance.mailboxes {
            guard let messages = landed.maildirs[mailbox] else { continue }
            let from = Set(messages.map { $0.value("From") ?? "(none)" }).sorted().joined(separator: " / ")
            say("    Maildir of \(pad(mailbox + "@example.com", 24)) \(count(messages.count))   From: \(from)")
        }
        for sent in landed.internet {
            say("    \(pad("the Internet (smtp-sink)", 35)) \(count(1))   to \(sent.envelopeRecipients.joined(separator: ", "))")
            say("        envelope sender (MAIL FROM): \(sent.envelopeSender)")
            for name in internetHeaders {
                say("        \(name): \(sent.file.value(name) ?? "(none)")")
            }
        }
        return landed
    }

    private func expectAccepted(_ outcome: SMTPOutcome) -> [String] {
        outcome.accepted ? [] : ["Postfix did not accept the message:\n\(outcome)"]
    }

    private func expect(_ landed: Landed, maildirs expected: [String: Int], internet: Int) -> [String] {
        let got = landed.maildirs.mapValues(\.count)
        var problems: [String] = []
        if got != expected {
            problems.append("expected Maildirs \(list(expected)), got \(list(got))")
        }
        if landed.internet.count != internet {
            problems.append("expected \(count(internet)) to the Internet, got \(landed.internet.count)")
        }
        return problems
    }

    /// Says "as expected" when nothing went wrong; the problems go back to the runner.
    private func verdict(_ problems: [String], _ expectation: String) -> [String] {
        if problems.isEmpty { say("  As expected: \(expectation).") }
        return problems
    }

    /// Makes this run's messages recognisable.
    private func tag() -> String { "sandbox-" + String(UInt64.random(in: 0...UInt64.max), radix: 36) }

    /// This case's maillog lines and sharemail output: the evidence when it went wrong.
    func logs() -> String {
        var text = "Postfix maillog during this case:\n" + lab.postfix.maillog(since: logOffsets.maillog)
        if let sharemail = lab.sharemail {
            text += "\nsharemail output during this case:\n" + sharemail.log(since: logOffsets.sharemail)
        }
        return text
    }

    private func list(_ counts: [String: Int]) -> String {
        counts.isEmpty ? "none" : counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
    }

    private func count(_ number: Int) -> String { number == 1 ? "1 message" : "\(number) messages" }
}
