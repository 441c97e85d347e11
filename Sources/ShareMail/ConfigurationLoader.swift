import MailHeaders
import TOMLKit

/// One thing wrong with a configuration file, pointing at the key and line.
public struct ConfigurationProblem: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Severity: String, Sendable { case error, warning }
    public var file: String
    /// 1-based line, when the key can be found in the text.
    public var line: Int?
    /// Dotted key path such as `mailbox[0].staff[1].address`.
    public var key: String
    public var message: String
    public var severity: Severity

    public var description: String {
        let place = line.map { "\(file):\($0)" } ?? file
        let prefix = severity == .warning ? "warning: " : ""
        return key.isEmpty ? "\(place): \(prefix)\(message)" : "\(place): \(prefix)\(key): \(message)"
    }
}

/// All problems of a file that cannot be used.
public struct ConfigurationErrors: Error, Sendable, CustomStringConvertible {
    public var problems: [ConfigurationProblem]
    public var description: String { problems.map(\.description).joined(separator: "\n") }
}

/// Reads sharemail's TOML configuration. Pure: it takes the text, so the
/// daemon, the checker and the tests load files the same way.
public enum ConfigurationLoader {
    /// Parses and validates the policy, and lets `settings` read the other
    /// top-level keys (`settingsKeys`: the daemon's) from the same file.
    /// Throws every error found (not just the first); warnings come back with
    /// the result.
    public static func load<Settings>(
        text: String, file: String, settingsKeys: Set<String>, settings: (inout ConfigurationReader) -> Settings,
        together check: (Configuration, Settings, inout ConfigurationReader) -> Void = { _, _, _ in }
    ) throws(ConfigurationErrors) -> (Configuration, Settings, [ConfigurationProblem]) {
        var reader = try ConfigurationReader(text: text, file: file)
        reader.checkKeys(reader.table, allowed: Configuration.keys.union(settingsKeys), path: "")
        let other = settings(&reader)
        let configuration = reader.configuration()
        if let configuration { check(configuration, other, &reader) }
        let errors = reader.problems.filter { $0.severity == .error }
        if let configuration, errors.isEmpty {
            return (configuration, other, reader.problems.filter { $0.severity == .warning })
        }
        throw ConfigurationErrors(problems: reader.problems.sorted { ($0.line ?? 0) < ($1.line ?? 0) })
    }

    /// The policy alone: top-level keys that are not the policy's are left
    /// unread and unchecked (they are the daemon's).
    public static func load(text: String, file: String) throws(ConfigurationErrors) -> (Configuration, [ConfigurationProblem]) {
        var reader = try ConfigurationReader(text: text, file: file)
        let configuration = reader.configuration()
        let errors = reader.problems.filter { $0.severity == .error }
        if let configuration, errors.isEmpty {
            return (configuration, reader.problems.filter { $0.severity == .warning })
        }
        throw ConfigurationErrors(problems: reader.problems.sorted { ($0.line ?? 0) < ($1.line ?? 0) })
    }
}

/// One configuration file being read: typed access to its top-level keys,
/// and every problem found, each with its line. The daemon reads its own
/// settings through it, so its problems read like the policy's.
public struct ConfigurationReader {
    let file: String
    let locator: KeyLocator
    let table: TOMLTable
    public private(set) var problems: [ConfigurationProblem] = []

    static let mailboxKeys: Set<String> = [
        "address", "manager", "manager_login", "forward_unnamed", "sticky_customers", "staff",
        "unnamed", "from_name",
    ]
    static let staffKeys: Set<String> = [
        "name", "aliases", "address", "login", "receive_internet", "send_internet",
        "away", "backup",
    ]

    init(text: String, file: String) throws(ConfigurationErrors) {
        self.file = file
        locator = KeyLocator(text: text)
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigurationErrors(problems: [
                ConfigurationProblem(
                    file: file, line: error.source.begin.line, key: "", message: "TOML syntax: \(error.description)",
                    severity: .error)
            ])
        } catch {
            throw ConfigurationErrors(problems: [
                ConfigurationProblem(
                    file: file, line: nil, key: "", message: "TOML syntax: \(error)", severity: .error)
            ])
        }
    }

    /// Records a problem with top-level key `key` (or a key path).
    public mutating func problem(_ key: String, _ message: String, severity: ConfigurationProblem.Severity = .error) {
        problems.append(
            ConfigurationProblem(
                file: file, line: locator.line(of: key), key: key, message: message,
                severity: severity))
    }

    /// A top-level string; a value of another type is a problem, and nil.
    public mutating func string(_ key: String) -> String? { string(table, key, path: "") }

    /// A top-level whole number in `range`; anything else is a problem, and nil.
    public mutating func int(_ key: String, range: ClosedRange<Int>) -> Int? { int(table, key, path: "", range: range) }

    mutating func configuration() -> Configuration? {
        var configuration = Configuration(mailboxes: [])
        configuration.trustedNetworks = (stringArray(table, "trusted_networks", path: "") ?? []).enumerated().compactMap { i, text in
            let network = IPNetwork(text)
            if network == nil { problem("trusted_networks[\(i)]", "\"\(text)\" is not an IP address or network") }
            return network
        }
        if let charset = string(table, "header_fallback_charset", path: "") { configuration.headerFallbackCharset = charset }
        if let delimiter = string(table, "recipient_delimiter", path: "") {
            configuration.recipientDelimiter = delimiter
            if delimiter.contains(where: { $0 == "@" || $0 == "\"" || $0.isWhitespace || !$0.isASCII }) {
                problem("recipient_delimiter", "\"\(delimiter)\" is not a Postfix recipient_delimiter: give its characters, such as \"+\"")
            }
        }

        var mailboxes: [SharedMailbox] = []
        var teams: [Team] = []
        if let value = table["mailbox"] {
            if let array = value.array {
                for (i, element) in array.enumerated() {
                    guard let entry = element.table else {
                        problem("mailbox[\(i)]", "must be a table ([[mailbox]])")
                        continue
                    }
                    let (mailbox, staff) = self.mailbox(entry, path: "mailbox[\(i)]")
                    if let mailbox { mailboxes.append(mailbox) }
                    teams.append(Team(path: "mailbox[\(i)]", mailbox: mailbox, staff: staff))
                }
            } else {
                problem("mailbox", "must be an array of tables: write [[mailbox]]")
            }
        }
        if table["mailbox"] == nil {
            problem("", "no [[mailbox]] is configured: sharemail would do nothing", severity: .warning)
        }
        checkDuplicates(teams)
        checkBackups(teams)
        configuration.mailboxes = mailboxes
        return configuration
    }

    /// The mailbox (nil when unusable) and the staff read from it: staff are
    /// checked for duplicates even when their mailbox has an error.
    mutating func mailbox(_ table: TOMLTable, path: String) -> (SharedMailbox?, [Staff]) {
        checkKeys(table, allowed: Self.mailboxKeys, path: path)
        let address = requiredAddress(table, "address", path: path)
        let manager = optionalAddress(table, "manager", path: path)
        let managerLogin = string(table, "manager_login", path: path)
        if let managerLogin, managerLogin.isEmpty || managerLogin.contains(where: \.isWhitespace) {
            problem(path + ".manager_login", "\"\(managerLogin)\" is not a usable SASL login")
        }
        let forward = bool(table, "forward_unnamed", path: path) ?? false
        var unnamed: UnnamedRule?
        if let text = string(table, "unnamed", path: path) {
            unnamed = UnnamedRule(rawValue: text)
            if unnamed == nil {
                problem(path + ".unnamed", "\"\(text)\" is not a rule: use \(UnnamedRule.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))")
            }
            if table["forward_unnamed"] != nil {
                problem(
                    path + ".forward_unnamed",
                    "unnamed and forward_unnamed are both set: keep unnamed (forward_unnamed = true is \"all\", false is \"manager\")")
            }
        }
        var fromName = FromNameTemplate.plain
        if let text = string(table, "from_name", path: path) {
            if let template = FromNameTemplate(text) {
                fromName = template
            } else {
                problem(path + ".from_name", FromNameTemplate.problem(in: text) ?? "\"\(text)\" is not a usable template")
            }
        }
        let sticky = bool(table, "sticky_customers", path: path) ?? false
        var staff: [Staff] = []
        if let value = table["staff"] {
            if let array = value.array {
                for (i, element) in array.enumerated() {
                    guard let entry = element.table else {
                        problem("\(path).staff[\(i)]", "must be a table ([[mailbox.staff]])")
                        continue
                    }
                    if let member = self.staff(entry, path: "\(path).staff[\(i)]") { staff.append(member) }
                }
            } else {
                problem("\(path).staff", "must be an array of tables: write [[mailbox.staff]]")
            }
        }
        guard let address else { return (nil, staff) }
        return (
            SharedMailbox(
                address: address, manager: manager, managerLogin: managerLogin, forwardUnnamed: forward, stickyCustomers: sticky,
                staff: staff, unnamed: unnamed, fromName: fromName), staff
        )
    }

    mutating func staff(_ table: TOMLTable, path: String) -> Staff? {
        checkKeys(table, allowed: Self.staffKeys, path: path)
        let name = string(table, "name", path: path)
        if table["name"] == nil { problem(path + ".name", "is required") }
        if let name, NameNormalizer.normalize(name).isEmpty { problem(path + ".name", "must not be empty") }
        let aliases = stringArray(table, "aliases", path: path) ?? []
        for (i, alias) in aliases.enumerated() where NameNormalizer.normalize(alias).isEmpty {
            problem("\(path).aliases[\(i)]", "must not be empty")
        }
        let address = requiredAddress(table, "address", path: path)
        let login = string(table, "login", path: path)
        if let login, login.isEmpty || login.contains(where: \.isWhitespace) {
            problem(path + ".login", "\"\(login)\" is not a usable SASL login")
        }
        let receive = bool(table, "receive_internet", path: path) ?? false
        let send = bool(table, "send_internet", path: path) ?? true
        let away = bool(table, "away", path: path) ?? false
        let backup = string(table, "backup", path: path)
        guard let name, let address else { return nil }
        return Staff(
            name: name, aliases: aliases, address: address, login: login, receiveInternet: receive, sendInternet: send,
            away: away, backup: backup)
    }

    /// Duplicates make routing ambiguous: each is an error naming both places.
    /// One [[mailbox]] as read, usable or not.
    struct Team {
        let path: String
        let mailbox: SharedMailbox?
        let staff: [Staff]
    }

    mutating func checkDuplicates(_ teams: [Team]) {
        var unified: [EmailAddress: String] = [:]
        var roles: [EmailAddress: String] = [:]  // unified and manager addresses
        for team in teams {
            guard let mailbox = team.mailbox else { continue }
            let path = team.path
            if let first = unified[mailbox.address] {
                problem(path + ".address", "\(mailbox.address) is already the address of \(first)")
            } else {
                unified[mailbox.address] = path
            }
            roles[mailbox.address] = roles[mailbox.address] ?? "\(path).address"
            roles[mailbox.manager] = roles[mailbox.manager] ?? "\(path).manager"
        }
        // Addresses in a domain of no unified address: sharemail counts the
        // domain as local, so Postfix must deliver it here too.
        let unifiedDomains = Set(unified.keys.map(\.domain))
        for team in teams {
            guard let mailbox = team.mailbox else { continue }
            if !unifiedDomains.contains(mailbox.manager.domain) {
                problem(
                    team.path + ".manager",
                    "\(mailbox.manager) is in a domain no unified address covers; it counts as local: make sure Postfix delivers it on this host",
                    severity: .warning)
            }
            for (s, staff) in team.staff.enumerated() where !unifiedDomains.contains(staff.address.domain) {
                problem(
                    "\(team.path).staff[\(s)].address",
                    "\(staff.address) is in a domain no unified address covers; it counts as local: make sure Postfix delivers it on this host",
                    severity: .warning)
            }
        }
        var addresses: [EmailAddress: String] = [:]
        var logins: [String: String] = [:]
        // A staff logged in with a manager's login would be taken for staff,
        // and could reassign that manager's threads.
        for team in teams {
            guard let mailbox = team.mailbox else { continue }
            logins[mailbox.managerLogin.lowercased()] = logins[mailbox.managerLogin.lowercased()] ?? "\(team.path).manager_login"
        }
        for team in teams {
            var names: [String: String] = [:]
            for (s, staff) in team.staff.enumerated() {
                let path = "\(team.path).staff[\(s)]"
                if let first = addresses[staff.address] {
                    // One staff, one unified address: their mail could not
                    // say which address it leaves as.
                    problem(
                        path + ".address",
                        "\(staff.address) is already staff at \(first); a staff belongs to one mailbox (its mail leaves as that unified address)")
                } else {
                    addresses[staff.address] = path
                }
                if let role = roles[staff.address] {
                    problem(path + ".address", "\(staff.address) is a unified or manager address (\(role)); a staff needs a mailbox of their own")
                }
                let login = staff.login.lowercased()
                if let first = logins[login] {
                    problem(path + ".login", "login \"\(staff.login)\" is already used by \(first)")
                } else {
                    logins[login] = path
                }
                for key in staff.matchKeys {
                    if let first = names[key] {
                        problem(path + ".name", "\"\(key)\" matches the same way as a name of \(first): customers' replies could not be routed")
                    } else {
                        names[key] = path
                    }
                }
            }
        }
    }

    /// A backup covers within the mailbox (its mail leaves as that
    /// unified address), is there (not away itself), and no chain of
    /// backups comes back to where it started.
    mutating func checkBackups(_ teams: [Team]) {
        func find(_ text: String, in staff: [Staff]) -> Int? {
            staff.firstIndex { $0.login.lowercased() == text.lowercased() }
                ?? EmailAddress(text).flatMap { address in staff.firstIndex { $0.address == address } }
        }
        for team in teams {
            var target: [Int: Int] = [:]
            for (s, staff) in team.staff.enumerated() {
                guard let text = staff.backup else { continue }
                let path = "\(team.path).staff[\(s)].backup"
                guard let b = find(text, in: team.staff) else {
                    if let other = teams.first(where: { $0.path != team.path && find(text, in: $0.staff) != nil }) {
                        problem(path, "\"\(text)\" is staff of \(other.path), another mailbox: a backup must be staff of the same mailbox")
                    } else {
                        problem(path, "\"\(text)\" is no login or address of a staff of this mailbox")
                    }
                    continue
                }
                target[s] = b
                if team.staff[b].away, b != s {
                    problem(path, "\(team.staff[b].name) is away too: mail would reach nobody but the manager; choose a backup who is there")
                }
            }
            var reported = Set<Int>()
            for start in target.keys.sorted() where !reported.contains(start) {
                var seen = [start]
                var next = target[start]
                while let current = next, !seen.contains(current) {
                    seen.append(current)
                    next = target[current]
                }
                guard let current = next, current == start else { continue }
                reported.formUnion(seen)
                let names = (seen + [start]).map { team.staff[$0].name }.joined(separator: " → ")
                problem("\(team.path).staff[\(start)].backup", "backups go round in a cycle (\(names)): each must end with a staff who has none")
            }
        }
    }

    // MARK: Typed access

    mutating func checkKeys(_ table: TOMLTable, allowed: Set<String>, path: String) {
        for key in table.keys where !allowed.contains(key) {
            let full = path.isEmpty ? key : "\(path).\(key)"
            problem(full, "unknown key (known here: \(allowed.sorted().joined(separator: ", ")))")
        }
    }

    mutating func string(_ table: TOMLTable, _ key: String, path: String) -> String? {
        guard let value = table[key] else { return nil }
        if let text = value.string { return text }
        problem(join(path, key), "must be a string")
        return nil
    }

    mutating func bool(_ table: TOMLTable, _ key: String, path: String) -> Bool? {
        guard let value = table[key] else { return nil }
        if let flag = value.bool { return flag }
        problem(join(path, key), "must be true or false")
        return nil
    }

    mutating func int(_ table: TOMLTable, _ key: String, path: String, range: ClosedRange<Int>) -> Int? {
        guard let value = table[key] else { return nil }
        if let number = value.int, range.contains(number) { return number }
        problem(join(path, key), "must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        return nil
    }

    mutating func stringArray(_ table: TOMLTable, _ key: String, path: String) -> [String]? {
        guard let value = table[key] else { return nil }
        guard let array = value.array else {
            problem(join(path, key), "must be an array of strings")
            return nil
        }
        var result: [String] = []
        for (i, element) in array.enumerated() {
            if let text = element.string { result.append(text) } else { problem("\(join(path, key))[\(i)]", "must be a string") }
        }
        return result
    }

    mutating func requiredAddress(_ table: TOMLTable, _ key: String, path: String) -> EmailAddress? {
        if table[key] == nil {
            problem(join(path, key), "is required")
            return nil
        }
        return optionalAddress(table, key, path: path)
    }

    mutating func optionalAddress(_ table: TOMLTable, _ key: String, path: String) -> EmailAddress? {
        guard let text = string(table, key, path: path) else { return nil }
        guard let address = EmailAddress(text), !text.contains("<") else {
            problem(join(path, key), "\"\(text)\" is not an email address (write local@domain)")
            return nil
        }
        return address
    }

    func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
}

/// Finds the line of a key path such as `mailbox[1].staff[0].address` in
/// TOML text. TOMLKit does not report where values sit, so this follows the
/// table headers sharemail's schema uses; a key it cannot place falls back
/// to its table's header line.
struct KeyLocator {
    private var lines: [String: Int] = [:]

    init(text: String) {
        var table = ""
        var mailbox = -1
        var staff = -1
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingSpaces
            let lineNumber = number + 1
            if line.hasPrefix("[") {
                let name = line.filter { $0 != "[" && $0 != "]" && !$0.isWhitespace }
                let header = name.split(separator: "#").first.map(String.init) ?? name
                switch header {
                case "mailbox":
                    mailbox += 1
                    staff = -1
                    table = "mailbox[\(mailbox)]"
                case "mailbox.staff":
                    staff += 1
                    table = "mailbox[\(max(mailbox, 0))].staff[\(staff)]"
                default:
                    table = header
                }
                if lines[table] == nil { lines[table] = lineNumber }
                continue
            }
            guard let equals = line.firstIndex(of: "="), !line.hasPrefix("#") else { continue }
            let key = line[..<equals].trimmingSpaces.filter { $0 != "\"" && $0 != "'" }
            guard !key.isEmpty else { continue }
            let path = table.isEmpty ? key : "\(table).\(key)"
            if lines[path] == nil { lines[path] = lineNumber }
        }
    }

    /// The line of `path`, else of the nearest enclosing table or array key.
    func line(of path: String) -> Int? {
        var candidate = Substring(path)
        while !candidate.isEmpty {
            if let line = lines[String(candidate)] { return line }
            // Drop a trailing `[n]` of an array element, then a `.key`.
            if candidate.hasSuffix("]"), let open = candidate.lastIndex(of: "[") {
                candidate = candidate[..<open]
            } else if let dot = candidate.lastIndex(of: ".") {
                candidate = candidate[..<dot]
            } else {
                return nil
            }
        }
        return nil
    }
}
