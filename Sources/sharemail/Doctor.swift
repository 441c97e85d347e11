import ArgumentParser
import Foundation
import Glibc
import ShareMail

struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that the live Postfix configuration fits sharemail's.",
        discussion: """
            Reads Postfix's configuration (postconf, postconf -M, postmap -q on the \
            tables it names) and reports, each with how to fix it:
              - sharemail's socket in smtpd_milters and non_smtpd_milters;
              - milter_default_action = tempfail and milter_protocol 6;
              - a chrooted smtpd or cleanup that cannot reach the socket;
              - smtpd_sasl_authenticated_header, which would show staff logins;
              - sharemail placed before a DKIM signer;
              - recipient_delimiter the same in Postfix and sharemail;
              - each unified and manager address accepted and delivered by Postfix;
              - whether a header-strip rule is needed (it is not: sharemail adds no
                private headers);
              - whether sharemail answers on its socket;
              - that the user sharemail runs as can write its state (the conversation
                memory's SQLite file, or the directory it will be created in).

            The daemon's user is --user; by default the User= of the unit (--unit,
            /etc/systemd/system/sharemail.service, where the README installs it, and its
            drop-ins in sharemail.service.d/), else "sharemail".

            EXIT STATUS
              0 no problem found, 1 problems found, 78 bad sharemail configuration.

            EXAMPLES
              sharemail doctor --config /etc/sharemail/sharemail.toml
              sharemail doctor --config sharemail.toml -c /etc/postfix-out
            """
    )

    @OptionGroup var configurationFile: ConfigurationFileOption
    var config: String { configurationFile.config }

    @Option(name: .customShort("c"), help: ArgumentHelp("Postfix configuration directory (postconf -c).", valueName: "dir"))
    var postfixDirectory: String?

    @Option(name: .long, help: ArgumentHelp("The socket sharemail listens on, if not the file's.", valueName: "spec"))
    var socket: String?

    @Option(name: .long, help: ArgumentHelp("The user sharemail serve runs as (default: the unit's User=, else sharemail).", valueName: "name"))
    var user: String?

    @Option(name: .long, help: ArgumentHelp("The systemd unit that runs sharemail, for its User= (and drop-ins).", valueName: "file"))
    var unit: String = Doctor.unitFile

    static let unitFile = "/etc/systemd/system/sharemail.service"

    /// The `User=` of the installed unit (its drop-ins in sharemail.service.d/ win, the
    /// last one read last, as systemd reads them), else the README's `sharemail`.
    static func daemonUser(unit path: String = unitFile) -> String {
        let dropIns = ((try? FileManager.default.contentsOfDirectory(atPath: path + ".d")) ?? [])
            .filter { $0.hasSuffix(".conf") }.sorted().map { path + ".d/" + $0 }
        var user = "sharemail"
        for file in [path] + dropIns {
            let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
            for line in text.split(separator: "\n") where line.hasPrefix("User=") {
                let name = line.dropFirst("User=".count).trimmingCharacters(in: .whitespaces)
                if !name.isEmpty { user = name }
            }
        }
        return user
    }

    func run() throws {
        let configuration: Configuration
        do {
            configuration = try ConfigurationFile.load(config).0
        } catch {
            print("\(error)")
            throw ExitCode(78)
        }
        let postfix: PostfixView
        do {
            postfix = try PostfixView.read(directory: postfixDirectory)
        } catch {
            print("FAIL cannot read the Postfix configuration: \(error)")
            throw ExitCode(1)
        }
        var findings = DoctorChecks(configuration: configuration, socketSpec: socket ?? configuration.socket, postfix: postfix).run()
        findings.append(StateCheck(state: configuration.state, user: user ?? Self.daemonUser(unit: unit)).run())
        for finding in findings { print(finding) }
        let failures = findings.filter { $0.level == .fail }.count
        print(failures == 0 ? "no problems found" : "\(failures) problem(s) found")
        if failures > 0 { throw ExitCode(1) }
    }
}

struct Finding: CustomStringConvertible {
    enum Level: String { case ok = "OK  ", warn = "WARN", fail = "FAIL" }
    let level: Level
    let text: String
    var fix: String?

    var description: String {
        "\(level.rawValue) \(text)" + (fix.map { "\n     fix: \($0)" } ?? "")
    }
}

/// What Postfix says about itself: parameters (with defaults, $names
/// expanded), master.cf services, and table lookups.
struct PostfixView {
    var parameters: [String: String]
    /// master.cf rows: service name, type, chroot column, command.
    var services: [(name: String, type: String, chroot: String, command: String)]
    var lookup: (_ table: String, _ key: String) -> String?

    static func read(directory: String?) throws -> PostfixView {
        let dirArgs = directory.map { ["-c", $0] } ?? []
        let main = try run("postconf", dirArgs + ["-x"])
        var parameters: [String: String] = [:]
        for line in main.split(separator: "\n") {
            guard let eq = line.range(of: " = ") ?? line.range(of: " =") else { continue }
            parameters[String(line[..<eq.lowerBound])] = String(line[eq.upperBound...]).trimmingCharacters(in: " ")
        }
        let master = try run("postconf", dirArgs + ["-M"])
        let services = master.split(separator: "\n").compactMap { line -> (String, String, String, String)? in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 8 else { return nil }
            return (String(fields[0]), String(fields[1]), String(fields[4]), String(fields[7]))
        }
        return PostfixView(parameters: parameters, services: services.map { (name: $0.0, type: $0.1, chroot: $0.2, command: $0.3) }) {
            table, key in
            let answer = try? run("postmap", dirArgs + ["-q", key, table])
            return answer.flatMap { $0.isEmpty ? nil : $0.trimmingCharacters(in: "\n ") }
        }
    }

    /// A parameter's list value (commas and white space separate).
    func list(_ name: String) -> [String] {
        splitList(parameters[name] ?? "")
    }

    /// Splits a Postfix list, keeping `{ … }` groups whole.
    func splitList(_ value: String) -> [String] {
        var items: [String] = []
        var current = ""
        var depth = 0
        for c in value {
            if c == "{" { depth += 1 }
            if c == "}" { depth = max(0, depth - 1) }
            if depth == 0, c == "," || c == " " || c == "\t" || c == "\n" {
                if !current.isEmpty { items.append(current) }
                current = ""
            } else {
                current.append(c)
            }
        }
        if !current.isEmpty { items.append(current) }
        return items
    }

    private static func run(_ command: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/\(command)")
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = Pipe()
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ValidationError("\(command) \(arguments.joined(separator: " ")) exited with \(process.terminationStatus)")
        }
        return String(decoding: data, as: UTF8.self)
    }
}

/// The checks themselves: configuration and Postfix's view in, findings out.
struct DoctorChecks {
    let configuration: Configuration
    let socketSpec: String
    let postfix: PostfixView

    /// Milters that sign mail: they must come after sharemail.
    static let signerHints = ["dkim", "8891", "rspamd", "11332", "dkimpy", "8892"]

    func run() -> [Finding] {
        var findings: [Finding] = []
        guard let ours = MilterSocket(libmilter: socketSpec) else {
            return [Finding(level: .fail, text: "sharemail's socket \"\(socketSpec)\" is not a socket spec",
                            fix: "use unix:/path or inet:port@host in `socket`")]
        }
        for list in ["smtpd_milters", "non_smtpd_milters"] {
            findings += milterList(list, ours: ours)
        }
        findings += SignerOrder(smtpdMilters: postfix.list("smtpd_milters"), nonSMTPDMilters: postfix.list("non_smtpd_milters"),
                                isSharemail: { MilterSocket(postfix: $0)?.matches(ours) == true },
                                isSigner: { entry in Self.signerHints.contains { entry.lowercased().contains($0) } }).findings()
        findings.append(parameter("milter_default_action", expected: "tempfail",
                                  why: "if sharemail is down, staff mail would leave with the staff's own address and the manager's copy would be missing"))
        let protocolVersion = Int(postfix.parameters["milter_protocol"] ?? "") ?? 6
        findings.append(protocolVersion >= 6
            ? Finding(level: .ok, text: "milter_protocol = \(protocolVersion)")
            : Finding(level: .fail, text: "milter_protocol = \(protocolVersion): sharemail needs 6 to change the envelope sender",
                      fix: "postconf -e milter_protocol=6"))
        findings += chroot(ours)
        if postfix.parameters["smtpd_sasl_authenticated_header"] == "yes" {
            findings.append(Finding(level: .fail,
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
            findings.append(Finding(level: .fail, text: "sharemail does not answer on \(ours): \(problem)",
                                    fix: "start it (systemctl start sharemail) and check `journalctl -u sharemail`"))
        } else {
            findings.append(Finding(level: .ok, text: "sharemail answers on \(ours)"))
        }
        return findings
    }

    func milterList(_ name: String, ours: MilterSocket) -> [Finding] {
        let entries = postfix.list(name)
        guard let index = entries.firstIndex(where: { MilterSocket(postfix: $0)?.matches(ours) == true }) else {
            let why = name == "smtpd_milters" ? "SMTP mail" : "mail from the sendmail command (webmail, scripts)"
            return [Finding(level: .fail, text: "\(name) does not list sharemail (\(ours)): \(why) is not filtered",
                            fix: "postconf -e '\(name) = \(([postfixSpelling(ours)] + entries).joined(separator: ", "))'")]
        }
        var findings = [Finding(level: .ok, text: "\(name) lists sharemail")]
        // Postfix 3.0's `{ socket, name=value, … }` settings override the global ones for this milter.
        let (socketItem, settings) = Self.milterGroup(entries[index])
        func without(_ key: String) -> String {
            var fixed = entries
            let kept = settings.filter { $0.key != key }
            fixed[index] = kept.isEmpty ? socketItem
                : "{ " + ([socketItem] + kept.map { "\($0.key)=\($0.value)" }).joined(separator: ", ") + " }"
            return "postconf -e '\(name) = \(fixed.joined(separator: ", "))'"
        }
        if let action = settings.first(where: { $0.key == "default_action" })?.value, action != "tempfail" {
            findings.append(Finding(level: .fail, text: "\(name): sharemail's entry sets default_action=\(action), overriding milter_default_action: if sharemail is down, staff mail would leave with the staff's own address and the manager's copy would be missing",
                                    fix: without("default_action")))
        }
        if let version = settings.first(where: { $0.key == "protocol" }).flatMap({ Int($0.value) }), version < 6 {
            findings.append(Finding(level: .fail, text: "\(name): sharemail's entry sets protocol=\(version), overriding milter_protocol: sharemail needs 6 to change the envelope sender",
                                    fix: without("protocol")))
        }
        let signersBefore = entries[..<index].filter { entry in Self.signerHints.contains { entry.lowercased().contains($0) } }
        if !signersBefore.isEmpty {
            var reordered = entries
            let mine = reordered.remove(at: index)
            reordered.insert(mine, at: 0)
            findings.append(Finding(level: .fail, text: "\(name): \(signersBefore.joined(separator: ", ")) runs before sharemail: it signs the From that sharemail then rewrites, and the signature breaks",
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
            return Finding(level: .fail,
                           text: "recipient_delimiter = \"\(postfixValue)\" in Postfix, \"\(ours)\" in sharemail: address extensions would be read differently",
                           fix: "set recipient_delimiter = \"\(postfixValue)\" in sharemail's configuration")
        }
        return Finding(level: .ok, text: "recipient_delimiter = \"\(ours)\" in Postfix and sharemail")
    }

    func chroot(_ ours: MilterSocket) -> [Finding] {
        guard case .unix(let path) = ours else { return [] }
        let queue = postfix.parameters["queue_directory"] ?? "/var/spool/postfix"
        return postfix.services.filter { ["smtpd", "cleanup"].contains($0.command) && $0.chroot == "y" }.compactMap { service in
            path.hasPrefix(queue + "/") ? nil : Finding(
                level: .fail,
                text: "master.cf: \(service.name) (\(service.command)) runs chrooted in \(queue) and cannot reach \(path)",
                fix: "set its chroot column to n (postconf -F '\(service.name)/\(service.type)/chroot=n'), or put the socket under \(queue)/ and use the path relative to it in Postfix")
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
            return Finding(level: .fail, text: "\(role) \(address): \(domain) is local (mydestination) but \(local) is no user or alias",
                           fix: "add an alias or a user for \(local)")
        }
        if inList("virtual_mailbox_domains") {
            if let via = found(in: "virtual_mailbox_maps", keys: aliasKeys) {
                return Finding(level: .ok, text: "\(role) \(address) has a virtual mailbox (\(via))")
            }
            return Finding(level: .fail, text: "\(role) \(address) is in no virtual_mailbox_maps or virtual_alias_maps table",
                           fix: "add it to virtual_mailbox_maps (a mailbox) or virtual_alias_maps (forward to a mailbox), then postmap")
        }
        if inList("virtual_alias_domains") {
            return Finding(level: .fail, text: "\(role) \(address) is in no virtual_alias_maps table",
                           fix: "add `\(address) <mailbox>` to virtual_alias_maps and run postmap")
        }
        if inList("relay_domains") {
            return Finding(level: .warn, text: "\(role) \(address): \(domain) is relayed to another host; that host must deliver it")
        }
        return Finding(level: .fail, text: "\(role) \(address): Postfix does not accept mail for \(domain)",
                       fix: "add \(domain) to virtual_mailbox_domains, virtual_alias_domains or mydestination")
    }

    func postfixSpelling(_ socket: MilterSocket) -> String {
        switch socket {
        case .unix(let path): "unix:\(path)"
        case .inet(let host, let port): "inet:\(host):\(port)"
        }
    }
}

/// Can the daemon's user write the conversation memory? A root-owned file
/// (say, created by a command run as root before the unit had a
/// StateDirectory) makes every write fail while mail still flows.
struct StateCheck {
    let state: String?
    let user: String

    func run() -> Finding {
        guard let state else { return Finding(level: .ok, text: "conversation memory is off (state = \"off\")") }
        guard state.hasPrefix("/") else {
            return Finding(level: .ok, text: "conversation memory in PostgreSQL: doctor does not check the database's permissions")
        }
        guard let entry = getpwnam(user) else {
            return Finding(level: .fail, text: "no user \(user) to run sharemail as: it could not write its state \(state)",
                           fix: "create it as the README's Install says, or give doctor the daemon's user with --user")
        }
        let uid = entry.pointee.pw_uid
        let groups = Self.groups(of: entry)
        let files = [state, state + "-wal", state + "-shm"].filter { FileManager.default.fileExists(atPath: $0) }
        for file in files where !Self.canWrite(file, uid: uid, groups: groups) {
            return Finding(level: .fail, text: "\(file) is not writable by \(user), the user sharemail runs as (\(Self.describe(file))): conversation memory cannot record",
                           fix: "chown \(user) \(files.joined(separator: " ")) && chmod 0640 \(files.joined(separator: " "))")
        }
        // SQLite creates the database and its -wal and -shm files next to each other.
        var directory = (state as NSString).deletingLastPathComponent
        while !FileManager.default.fileExists(atPath: directory) { directory = (directory as NSString).deletingLastPathComponent }
        let parent = (state as NSString).deletingLastPathComponent
        if directory != parent {
            if parent == "/var/lib/sharemail" {
                return Finding(level: .ok, text: "\(parent) does not exist yet: the unit's StateDirectory=sharemail creates it for \(user) at start")
            }
            if !Self.canWrite(directory, uid: uid, groups: groups) {
                return Finding(level: .fail, text: "\(parent) does not exist and \(user) cannot create it in \(directory) (\(Self.describe(directory)))",
                               fix: "install -d -o \(user) -m 0750 \(parent)")
            }
        } else if !Self.canWrite(directory, uid: uid, groups: groups) {
            return Finding(level: .fail, text: "\(directory) is not writable by \(user), the user sharemail runs as (\(Self.describe(directory))): SQLite cannot create \(files.isEmpty ? "the database" : "its -wal and -shm files") there",
                           fix: "chown \(user) \(directory) (the shipped unit's StateDirectory=sharemail does it for /var/lib/sharemail)")
        }
        return Finding(level: .ok, text: "conversation memory \(state) is writable by \(user), the user sharemail runs as")
    }

    static func groups(of entry: UnsafeMutablePointer<passwd>) -> [gid_t] {
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(entry.pointee.pw_name, entry.pointee.pw_gid, &groups, &count) < 0 {
            groups = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(entry.pointee.pw_name, entry.pointee.pw_gid, &groups, &count)
        }
        return Array(groups.prefix(Int(max(count, 0))))
    }

    /// The permission bits as the kernel reads them for this user (no ACLs).
    static func canWrite(_ path: String, uid: uid_t, groups: [gid_t]) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0 else { return false }
        if uid == 0 { return true }
        if info.st_uid == uid { return info.st_mode & 0o200 != 0 }
        if groups.contains(info.st_gid) { return info.st_mode & 0o020 != 0 }
        return info.st_mode & 0o002 != 0
    }

    static func describe(_ path: String) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else { return "missing" }
        let owner = getpwuid(info.st_uid).map { String(cString: $0.pointee.pw_name) } ?? "\(info.st_uid)"
        let group = getgrgid(info.st_gid).map { String(cString: $0.pointee.gr_name) } ?? "\(info.st_gid)"
        return "owner \(owner):\(group), mode \(String(info.st_mode & 0o777, radix: 8))"
    }
}
