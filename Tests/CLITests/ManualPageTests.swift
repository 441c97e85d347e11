import Foundation
import Testing

/// The manual pages against the code: every subcommand and option the parser knows is in
/// sharemail(8), every configuration key the loader accepts is in sharemail.toml(5) (and
/// nothing else), and the page's example loads. A subcommand, option or key added without
/// documentation fails here; scripts/man regenerates sharemail(8).
@Suite("Manual pages cover the code")
struct ManualPageTests {
    static let section8 = CLI.packageRoot.appendingPathComponent("man/sharemail.8")
    static let section5 = CLI.packageRoot.appendingPathComponent("man/sharemail.toml.5")

    // MARK: sharemail(8)

    /// One command of `sharemail --experimental-dump-help` (swift-argument-parser's ToolInfo).
    struct Command: Decodable {
        struct Argument: Decodable {
            struct Name: Decodable {
                let kind: String  // "long", "short", "longWithSingleDash"
                let name: String
            }
            let names: [Name]?
            let shouldDisplay: Bool
        }
        let commandName: String
        let arguments: [Argument]?
        let subcommands: [Command]?
    }

    struct ToolInfo: Decodable {
        let command: Command
    }

    static func commandTree() throws -> Command {
        let result = try CLI.run(["--experimental-dump-help"])
        try #require(result.status == 0, "\(result.error)")
        return try JSONDecoder().decode(ToolInfo.self, from: Data(result.output.utf8)).command
    }

    @Test("every subcommand appears in sharemail(8) as an entry of its own, with each of its options")
    func everySubcommandAndOption() throws {
        let page = try String(contentsOf: Self.section8, encoding: .utf8)
        let root = try Self.commandTree()
        let subcommands = (root.subcommands ?? []).filter { $0.commandName != "help" }
        #expect(subcommands.count >= 6, "the parser lists only \(subcommands.map(\.commandName))")
        let lines = page.split(separator: "\n").map(String.init)
        for command in subcommands {
            // generate-manual lists a subcommand as `.It Em name`.
            let entry = lines.firstIndex { $0 == ".It Em \(command.commandName)" }
            #expect(entry != nil, "sharemail(8) has no entry for `sharemail \(command.commandName)`: run scripts/man")
            guard let entry else { continue }
            let next = lines[(entry + 1)...].firstIndex { $0.hasPrefix(".It Em ") || $0.hasPrefix(".Sh ") } ?? lines.endIndex
            let section = lines[entry..<next].joined(separator: "\n")
            for argument in command.arguments ?? [] where argument.shouldDisplay {
                let names = argument.names ?? []
                // An option is listed by its long name, or by its short one when it has no long one.
                let spelled =
                    names.contains { $0.kind == "long" }
                    ? names.filter { $0.kind == "long" && $0.name != "help" }.map { "-" + $0.name }
                    : names.filter { $0.kind == "short" }.map(\.name)
                for name in spelled {
                    #expect(
                        section.contains("Fl \(name)"),
                        "sharemail(8) does not document `sharemail \(command.commandName) -\(name)`: run scripts/man")
                }
            }
        }
    }

    @Test("sharemail(8) has the sections the parser cannot write: exit status, signals, files")
    func handWrittenSections() throws {
        let page = try String(contentsOf: Self.section8, encoding: .utf8)
        for section in [".Sh EXIT STATUS", ".Sh SIGNALS", ".Sh FILES", ".Sh SEE ALSO"] {
            #expect(page.contains(section + "\n"), "sharemail(8) has no \(section)")
        }
        for signal in ["SIGUSR1", "SIGTERM"] { #expect(page.contains("Dv \(signal)"), "sharemail(8) does not name \(signal)") }
        for status in ["64", "65", "66", "69", "75", "78"] { #expect(page.contains(".It \(status)"), "exit status \(status) is missing") }
    }

    // MARK: sharemail.toml(5)

    /// The keys the loader accepts, by table, as `sharemail lint` lists them when it meets an
    /// unknown key ("unknown key (known here: a, b, …)"): straight from the loader.
    static func acceptedKeys() throws -> [String: Set<String>] {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sharemail-keys-\(UUID().uuidString).toml")
        defer { try? FileManager.default.removeItem(at: file) }
        try """
        zz_not_a_key = 1
        [[mailbox]]
        address = "sales@example.com"
        zz_not_a_key = 1
          [[mailbox.staff]]
          name = "Zhangsan"
          address = "zhangsan@example.com"
          zz_not_a_key = 1

        """.write(to: file, atomically: true, encoding: .utf8)
        let result = try CLI.run(["lint", "--config", file.path])
        var keys: [String: Set<String>] = [:]
        for line in result.output.split(separator: "\n") {
            guard let unknown = line.range(of: "zz_not_a_key: unknown key (known here: "), line.hasSuffix(")") else { continue }
            let path = line[..<unknown.lowerBound].split(separator: " ").last.map(String.init) ?? ""
            let table = path.contains("staff[") ? "mailbox.staff" : path.contains("mailbox[") ? "mailbox" : ""
            keys[table] = Set(line[unknown.upperBound...].dropLast().split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        }
        try #require(
            keys.count == 3 && keys.values.allSatisfy { $0.count >= 3 },
            "lint did not list the known keys of the top level, [[mailbox]] and [[mailbox.staff]]:\n\(result.output)")
        return keys
    }

    /// The `.It Cm key` entries of sharemail.toml(5), by the subsection they are in.
    static func documentedKeys() throws -> [String: Set<String>] {
        let page = try String(contentsOf: Self.section5, encoding: .utf8)
        var keys: [String: Set<String>] = [:]
        var table: String?
        for line in page.split(separator: "\n") {
            if line.hasPrefix(".Ss ") || line.hasPrefix(".Sh ") {
                table =
                    switch line {
                    case ".Ss Top-level keys": ""
                    case ".Ss Keys of a [[mailbox]]": "mailbox"
                    case ".Ss Keys of a [[mailbox.staff]]": "mailbox.staff"
                    default: nil
                    }
            } else if let table, line.hasPrefix(".It Cm ") {
                keys[table, default: []].insert(String(line.dropFirst(".It Cm ".count)))
            }
        }
        return keys
    }

    @Test("every key the loader accepts has an entry in sharemail.toml(5), in its table's section")
    func everyKeyDocumented() throws {
        let accepted = try Self.acceptedKeys()
        let documented = try Self.documentedKeys()
        for (table, keys) in accepted {
            let missing = keys.subtracting(documented[table] ?? [])
            #expect(missing.isEmpty, "sharemail.toml(5) does not document \(missing.sorted()) of \(table.isEmpty ? "the top level" : "[[\(table)]]")")
        }
    }

    @Test("every key sharemail.toml(5) documents is one the loader accepts")
    func noStaleKeys() throws {
        let accepted = try Self.acceptedKeys()
        for (table, keys) in try Self.documentedKeys() {
            let unknown = keys.subtracting(accepted[table] ?? [])
            #expect(
                unknown.isEmpty,
                "sharemail.toml(5) documents \(unknown.sorted()) in \(table.isEmpty ? "the top level" : "[[\(table)]]"), which the loader refuses")
        }
    }

    @Test("each key's entry gives its type, its default and whether a reload applies it")
    func entriesSayTypeDefaultReload() throws {
        let page = try String(contentsOf: Self.section5, encoding: .utf8)
        let topLevel = try #require(page.components(separatedBy: ".Ss Keys of a [[mailbox]]").first)
        let entries = page.components(separatedBy: "\n.It Cm ").dropFirst()
        #expect(entries.count >= 25)
        for text in entries {
            let key = String(text.prefix { $0 != "\n" })
            #expect(["String", "Integer", "Boolean", "Array"].contains { text.contains($0) }, "\(key): no type")
            #expect(text.contains("default") || text.contains("required"), "\(key): no default")
            if topLevel.contains("\n.It Cm \(key)\n") {
                #expect(text.contains("reloadable") || text.contains(".Sy restart"), "\(key): reloadable or not?")
            }
        }
        // Below the top level, whether a reload applies a key is said once per section.
        #expect(page.contains("Keys of a [[mailbox]]\nAll reloadable."))
        #expect(page.contains("Keys of a [[mailbox.staff]]\nAll reloadable."))
    }

    @Test("the EXAMPLE of sharemail.toml(5) passes lint and uses every key")
    func exampleLoads() throws {
        let page = try String(contentsOf: Self.section5, encoding: .utf8)
        let example = try #require(
            page.components(separatedBy: ".Sh EXAMPLES").last?
                .components(separatedBy: ".Bd -literal -offset indent\n").dropFirst().first?
                .components(separatedBy: "\n.Ed").first, "no literal example in sharemail.toml(5)")
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sharemail-example-\(UUID().uuidString).toml")
        defer { try? FileManager.default.removeItem(at: file) }
        try example.write(to: file, atomically: true, encoding: .utf8)
        let result = try CLI.run(["lint", "--config", file.path])
        #expect(result.status == 0, "the example does not pass lint:\n\(result.output)\(result.error)")
        let used = Set(
            example.split(separator: "\n").compactMap { line -> String? in
                let key = line.split(separator: "=").first?.trimmingCharacters(in: .whitespaces) ?? ""
                return key.isEmpty || key.hasPrefix("[") || key.hasPrefix("#") ? nil : key
            })
        let all = try Self.acceptedKeys().values.reduce(Set<String>()) { $0.union($1) }.subtracting(["mailbox", "staff"])
        // socket_owner has no sensible value in an example: it defaults to the service user.
        #expect(all.subtracting(used).subtracting(["socket_owner"]).isEmpty, "the example does not show \(all.subtracting(used).sorted())")
    }

    // MARK: --version

    @Test("sharemail --version is the version of the top entry of debian/changelog")
    func versionMatchesChangelog() throws {
        let changelog = try String(contentsOf: CLI.packageRoot.appendingPathComponent("debian/changelog"), encoding: .utf8)
        let first = try #require(changelog.split(separator: "\n").first)
        let version = try #require(first.split(separator: "(").dropFirst().first?.split(separator: ")").first)
        let result = try CLI.run(["--version"])
        #expect(result.status == 0)
        #expect(result.output.trimmingCharacters(in: .whitespacesAndNewlines) == String(version), "\(result.output)")
    }
}
