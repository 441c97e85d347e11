import Foundation
import Glibc
import Milter
import ShareMail

/// The checks themselves: configuration and Postfix's view in, findings out.
public struct DoctorChecks {
    let configuration: Configuration
    let ours: SocketSpec
    let postfix: PostfixView

    public init(configuration: Configuration, socket: SocketSpec, postfix: PostfixView) {
        self.configuration = configuration
        ours = socket
        self.postfix = postfix
    }

    /// Milters that sign mail: they must come after sharemail.
    static let signerHints = ["dkim", "8891", "rspamd", "11332", "dkimpy", "8892"]

    public func run() -> [Finding] {
        var findings: [Finding] = []
        for list in ["smtpd_milters", "non_smtpd_milters"] {
            findings += milterList(list, ours: ours)
        }
        findings += SignerOrder(
            smtpdMilters: postfix.list("smtpd_milters"), nonSMTPDMilters: postfix.list("non_smtpd_milters"),
            isSharemail: { SocketSpec(postfix: $0)?.matches(ours) == true },
            isSigner: { entry in Self.signerHints.contains { entry.lowercased().contains($0) } }
        ).findings()
        findings.append(
            parameter(
                "milter_default_action", expected: "tempfail",
                why: "if sharemail is down, staff mail would leave with the staff's own address and the manager's copy would be missing"))
        let protocolVersion = Int(postfix.parameters["milter_protocol"] ?? "") ?? 6
        findings.append(
            protocolVersion >= 6
                ? Finding(level: .ok, text: "milter_protocol = \(protocolVersion)")
                : Finding(
                    level: .fail, text: "milter_protocol = \(protocolVersion): sharemail needs 6 to change the envelope sender",
                    fix: "postconf -e milter_protocol=6"))
        findings += chroot(ours)
        if postfix.parameters["smtpd_sasl_authenticated_header"] == "yes" {
            findings.append(
                Finding(
                    level: .fail,
                    text: "smtpd_sasl_authenticated_header = yes: Received headers name the staff's login (often their own address) in mail that leaves",
                    fix: "postconf -e smtpd_sasl_authenticated_header=no"))
        }
        findings.append(recipientDelimiter())
        for mailbox in configuration.mailboxes {
            findings.append(deliverable(mailbox.address, role: "unified address"))
            if mailbox.manager != mailbox.address { findings.append(deliverable(mailbox.manager, role: "manager of \(mailbox.address)")) }
        }
        findings.append(Finding(level: .ok, text: "no header-strip rule needed: sharemail adds no private headers to mail that leaves"))
        if let problem = ours.probe() {
            findings.append(
                Finding(
                    level: .fail, text: "sharemail does not answer on \(ours): \(problem)",
                    fix: "start it (systemctl start sharemail) and check `journalctl -u sharemail`"))
        } else {
            findings.append(Finding(level: .ok, text: "sharemail answers on \(ours)"))
        }
        return findings
    }

    func milterList(_ name: String, ours: SocketSpec) -> [Finding] {
        let entries = postfix.list(name)
        guard let index = entries.firstIndex(where: { SocketSpec(postfix: $0)?.matches(ours) == true }) else {
            let why = name == "smtpd_milters" ? "SMTP mail" : "mail from the sendmail command (webmail, scripts)"
            return [
                Finding(
                    level: .fail, text: "\(name) does not list sharemail (\(ours)): \(why) is not filtered",
                    fix: "postconf -e '\(name) = \(([postfixSpelling(ours)] + entries).joined(separator: ", "))'")
            ]
        }
        var findings = [Finding(level: .ok, text: "\(name) lists sharemail")]
        // Postfix 3.0's `{ socket, name=value, … }` settings override the global ones for this milter.
        let (socketItem, settings) = Self.milterGroup(entries[index])
        func without(_ key: String) -> String {
            var fixed = entries
            let kept = settings.filter { $0.key != key }
            fixed[index] =
                kept.isEmpty
                ? socketItem
                : "{ " + ([socketItem] + kept.map { "\($0.key)=\($0.value)" }).joined(separator: ", ") + " }"
            return "postconf -e '\(name) = \(fixed.joined(separator: ", "))'"
        }
        if let action = settings.first(where: { $0.key == "default_action" })?.value, action != "tempfail" {
            findings.append(
                Finding(
                    level: .fail,
                    text:
                        "\(name): sharemail's entry sets default_action=\(action), overriding milter_default_action: if sharemail is down, staff mail would leave with the staff's own address and the manager's copy would be missing",
                    fix: without("default_action")))
        }
        if let version = settings.first(where: { $0.key == "protocol" }).flatMap({ Int($0.value) }), version < 6 {
            findings.append(
                Finding(
                    level: .fail,
                    text: "\(name): sharemail's entry sets protocol=\(version), overriding milter_protocol: sharemail needs 6 to change the envelope sender",
                    fix: without("protocol")))
        }
        let signersBefore = entries[..<index].filter { entry in Self.signerHints.contains { entry.lowercased().contains($0) } }
        if !signersBefore.isEmpty {
            var reordered = entries
            let mine = reordered.remove(at: index)
            reordered.insert(mine, at: 0)
            findings.append(
                Finding(
                    level: .fail,
                    text:
                        "\(name): \(signersBefore.joined(separator: ", ")) runs before sharemail: it signs the From that sharemail then rewrites, and the signature breaks",
                    fix: "postconf -e '\(name) = \(reordered.joined(separator: ", "))'"))
        } else if entries.count > 1 {
            findings.append(Finding(level: .ok, text: "\(name): sharemail runs before \(entries[(index + 1)...].joined(separator: ", "))"))
        }
        return findings
    }

    /// `{ unix:/path, default_action=accept }` → ("unix:/path", [("default_action", "accept")]);
    /// a plain entry has no settings. Postfix separates the items with commas or white space.
    static func milterGroup(_ entry: String) -> (socket: String, settings: [(key: String, value: String)]) {
        guard entry.hasPrefix("{") else { return (entry, []) }
        let items = entry.trimmingCharacters(in: "{} \t").split(whereSeparator: { ", \t\n".contains($0) }).map(String.init)
        guard let socket = items.first else { return (entry, []) }
        let settings = items.dropFirst().compactMap { item -> (key: String, value: String)? in
            guard let eq = item.firstIndex(of: "=") else { return nil }
            return (String(item[..<eq]), String(item[item.index(after: eq)...]))
        }
        return (socket, settings)
    }

    func parameter(_ name: String, expected: String, why: String) -> Finding {
        let value = postfix.parameters[name] ?? ""
        return value == expected
            ? Finding(level: .ok, text: "\(name) = \(value)")
            : Finding(level: .fail, text: "\(name) = \(value): \(why)", fix: "postconf -e \(name)=\(expected)")
    }

    /// A chrooted smtpd or cleanup sees unix socket paths inside the queue
    /// directory only.
    /// Postfix folds `zhangsan+tag@` to `zhangsan@` by its recipient_delimiter;
    /// sharemail must fold the same characters, or such a form would slip
    /// past the staff rules (or be held to them when Postfix delivers it
    /// elsewhere).
    func recipientDelimiter() -> Finding {
        let postfixValue = postfix.parameters["recipient_delimiter"] ?? ""
        let ours = configuration.recipientDelimiter
        guard Set(postfixValue) == Set(ours) else {
            return Finding(
                level: .fail,
                text: "recipient_delimiter = \"\(postfixValue)\" in Postfix, \"\(ours)\" in sharemail: address extensions would be read differently",
                fix: "set recipient_delimiter = \"\(postfixValue)\" in sharemail's configuration")
        }
        return Finding(level: .ok, text: "recipient_delimiter = \"\(ours)\" in Postfix and sharemail")
    }

    func chroot(_ ours: SocketSpec) -> [Finding] {
        guard case .unix(let path) = ours else { return [] }
        let queue = postfix.parameters["queue_directory"] ?? "/var/spool/postfix"
        return postfix.services.filter { ["smtpd", "cleanup"].contains($0.command) && $0.chroot == "y" }.compactMap { service in
            path.hasPrefix(queue + "/")
                ? nil
                : Finding(
                    level: .fail,
                    text: "master.cf: \(service.name) (\(service.command)) runs chrooted in \(queue) and cannot reach \(path)",
                    fix:
                        "set its chroot column to n (postconf -F '\(service.name)/\(service.type)/chroot=n'), or put the socket under \(queue)/ and use the path relative to it in Postfix"
                )
        }
    }

    /// Is `address` accepted at RCPT and delivered somewhere by Postfix.
    func deliverable(_ address: EmailAddress, role: String) -> Finding {
        let domain = String(address.domain)
        let local = String(address.localPart)
        func inList(_ name: String) -> Bool { postfix.list(name).contains { $0.lowercased() == domain } }
        func found(in parameter: String, keys: [String]) -> String? {
            for table in postfix.list(parameter) where table.contains(":") {
                for key in keys { if let value = postfix.lookup(table, key) { return "\(table) → \(value)" } }
            }
            return nil
        }
        let aliasKeys = [address.value, "@" + domain]
        if let via = found(in: "virtual_alias_maps", keys: aliasKeys) {
            return Finding(level: .ok, text: "\(role) \(address) is accepted by Postfix (virtual_alias_maps: \(via))")
        }
        if inList("mydestination") {
            if getpwnam(local) != nil {
                return Finding(level: .ok, text: "\(role) \(address) is a local user")
            }
            if let via = found(in: "alias_maps", keys: [local]) {
                return Finding(level: .ok, text: "\(role) \(address) is a local alias (\(via))")
            }
            return Finding(
                level: .fail, text: "\(role) \(address): \(domain) is local (mydestination) but \(local) is no user or alias",
                fix: "add an alias or a user for \(local)")
        }
        if inList("virtual_mailbox_domains") {
            if let via = found(in: "virtual_mailbox_maps", keys: aliasKeys) {
                return Finding(level: .ok, text: "\(role) \(address) has a virtual mailbox (\(via))")
            }
            return Finding(
                level: .fail, text: "\(role) \(address) is in no virtual_mailbox_maps or virtual_alias_maps table",
                fix: "add it to virtual_mailbox_maps (a mailbox) or virtual_alias_maps (forward to a mailbox), then postmap")
        }
        if inList("virtual_alias_domains") {
            return Finding(
                level: .fail, text: "\(role) \(address) is in no virtual_alias_maps table",
                fix: "add `\(address) <mailbox>` to virtual_alias_maps and run postmap")
        }
        if inList("relay_domains") {
            return Finding(level: .warn, text: "\(role) \(address): \(domain) is relayed to another host; that host must deliver it")
        }
        return Finding(
            level: .fail, text: "\(role) \(address): Postfix does not accept mail for \(domain)",
            fix: "add \(domain) to virtual_mailbox_domains, virtual_alias_domains or mydestination")
    }

    /// How main.cf names the socket.
    func postfixSpelling(_ socket: SocketSpec) -> String { socket.description }
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
