import Foundation
import Testing

/// Runs the real `sharemail` binary, as an admin would.
struct CLI {
    struct Result {
        let status: Int32
        let output: String
        let error: String
    }

    /// The binary SwiftPM built next to this test bundle.
    static let binary: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var directory = URL(fileURLWithPath: exe).deletingLastPathComponent()
        while directory.path != "/", !directory.lastPathComponent.hasSuffix("debug"), !directory.lastPathComponent.hasSuffix("release") {
            directory.deleteLastPathComponent()
        }
        return directory.appendingPathComponent("sharemail").path
    }()

    static let fixtures = Bundle.module.resourceURL!.appendingPathComponent("Fixtures")
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let exampleConfig = packageRoot.appendingPathComponent("postfix-conf/sharemail.example.toml").path

    static func run(_ arguments: [String], stdin: Data? = nil) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.currentDirectoryURL = fixtures
        let output = Pipe(), error = Pipe(), input = Pipe()
        process.standardOutput = output
        process.standardError = error
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(stdin) }
        try input.fileHandleForWriting.close()
        let out = output.fileHandleForReading.readDataToEndOfFile()
        let err = error.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus, output: String(decoding: out, as: UTF8.self),
            error: String(decoding: err, as: UTF8.self))
    }

    /// Compares with Fixtures/golden/NAME (in the source tree). Set
    /// UPDATE_GOLDEN=1 to rewrite the files after a deliberate change.
    static func expectGolden(_ text: String, _ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let file = packageRoot.appendingPathComponent("Tests/CLITests/Fixtures/golden/\(name)")
        if ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1" {
            try text.write(to: file, atomically: true, encoding: .utf8)
            return
        }
        let expected = try String(contentsOf: file, encoding: .utf8)
        #expect(text == expected, "output differs from golden/\(name)", sourceLocation: sourceLocation)
    }
}

@Suite("sharemail check")
struct CheckTests {
    let config = ["--config", CLI.exampleConfig]

    @Test("case 1: a customer writes to the unified address")
    func case1() throws {
        let result = try CLI.run(["check"] + config + ["--from", "customer@customer.test", "--rcpt", "sales@example.com", "case1-unnamed.eml"])
        #expect(result.status == 0, "\(result.error)")
        try CLI.expectGolden(result.output, "check-case1.txt")
    }

    @Test("case 2: a staff reply leaves under the unified address")
    func case2() throws {
        let result = try CLI.run(
            ["check"] + config + [
                "--login", "zhangsan", "--from", "zhangsan@example.com",
                "--rcpt", "customer@customer.test", "--rcpt", "lisi@example.com",
                "case2-staff-reply.eml",
            ])
        #expect(result.status == 0, "\(result.error)")
        try CLI.expectGolden(result.output, "check-case2.txt")
        // What the message carries afterwards names no staff mailbox.
        let newValues = result.output.split(separator: "\n").filter { $0.contains(" → ") || $0.hasPrefix("header added") }
            .map { $0.components(separatedBy: " → ").last ?? "" }
        #expect(newValues.count == 6)
        for value in newValues { #expect(!value.contains("zhangsan@") && !value.contains("lisi@"), "\(value)") }
    }

    @Test("case 3: a reply to \"Zhangsan\" <sales@…>, read from standard input")
    func case3() throws {
        let message = try Data(contentsOf: CLI.fixtures.appendingPathComponent("case3-customer-reply.eml"))
        let result = try CLI.run(
            ["check"] + config + ["--from", "customer@customer.test", "--rcpt", "sales@example.com", "-"],
            stdin: message)
        #expect(result.status == 0, "\(result.error)")
        try CLI.expectGolden(result.output, "check-case3.txt")
    }

    @Test("rule 2 without a message: the RCPT refusal, exit status 1")
    func refusal() throws {
        let result = try CLI.run(["check"] + config + ["--from", "customer@customer.test", "--rcpt", "zhangsan@example.com"])
        #expect(result.status == 1)
        try CLI.expectGolden(result.output, "check-refused.txt")
    }

    @Test("--json prints exactly the documented keys")
    func jsonSchema() throws {
        let result = try CLI.run(
            ["check"] + config + [
                "--json", "--login", "zhangsan", "--from", "zhangsan@example.com",
                "--rcpt", "customer@customer.test", "case2-staff-reply.eml",
            ])
        #expect(result.status == 0)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
        #expect(
            Set(object.keys) == [
                "action", "reply", "add_recipients", "remove_recipients", "envelope_from", "header_changes",
                "refused_recipients", "reasons",
            ])
        #expect(object["refused_recipients"] as? [[String: String]] == [])
        #expect(object["action"] as? String == "accept")
        #expect(object["reply"] is NSNull)
        #expect(object["add_recipients"] as? [String] == ["manager@example.com"])
        #expect(object["remove_recipients"] as? [String] == [])
        #expect(object["envelope_from"] as? String == "sales@example.com")
        let changes = try #require(object["header_changes"] as? [[String: Any]])
        #expect(!changes.isEmpty)
        for change in changes {
            #expect(Set(change.keys) == ["op", "name", "value"])
            #expect(["add", "change", "delete"].contains(change["op"] as? String ?? ""))
        }
        #expect((object["reasons"] as? [String])?.isEmpty == false)
    }

    @Test("--json for a refusal carries the reply and null envelope_from")
    func jsonRefusal() throws {
        let result = try CLI.run(["check"] + config + ["--json", "--from", "c@customer.test", "--rcpt", "lisi@example.com"])
        #expect(result.status == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
        #expect(object["action"] as? String == "reject")
        #expect((object["reply"] as? String)?.hasPrefix("550 5.7.1 ") == true)
        #expect(object["envelope_from"] is NSNull)
        let refused = try #require(object["refused_recipients"] as? [[String: String]])
        #expect(refused.count == 1)
        #expect(refused.first?["recipient"] == "lisi@example.com" && refused.first?["action"] == "reject")
        #expect(refused.first?["reply"]?.hasPrefix("550 5.7.1 ") == true)
        #expect(refused.first?["reason"]?.hasPrefix("rule 2:") == true)
    }

    @Test("--json names each refused recipient also when the others are accepted")
    func jsonPartialRefusal() throws {
        let result = try CLI.run(
            ["check"] + config + [
                "--json", "--from", "c@customer.test", "--rcpt", "lisi@example.com",
                "--rcpt", "sales@example.com",
            ])
        #expect(result.status == 0)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
        #expect(object["action"] as? String == "accept")
        let refused = try #require(object["refused_recipients"] as? [[String: String]])
        #expect(refused.map { $0["recipient"] } == ["lisi@example.com"])
        #expect(refused.first?["action"] == "reject")
    }

    @Test(
        "exit statuses: 64 bad usage, 65 unreadable message, 78 bad config",
        arguments: [
            (["check", "--config", CLI.exampleConfig, "--from", "a@b.test"], Int32(64)),
            (["check", "--config", CLI.exampleConfig, "--from", "a@b.test", "--rcpt", "x@y.test", "--client-ip", "nonsense"], Int32(64)),
            (["check", "--config", CLI.exampleConfig, "--from", "a@b.test", "--rcpt", "x@y.test", "no-such-file.eml"], Int32(65)),
            (["check", "--config", "bad.toml", "--from", "a@b.test", "--rcpt", "x@y.test"], Int32(78)),
            (["check", "--config", "missing.toml", "--from", "a@b.test", "--rcpt", "x@y.test"], Int32(78)),
        ])
    func exitStatus(arguments: [String], status: Int32) throws {
        #expect(try CLI.run(arguments).status == status)
    }

    @Test("--help reads like a man page, with examples")
    func help() throws {
        let result = try CLI.run(["check", "--help"])
        #expect(result.output.contains("EXIT STATUS"))
        #expect(result.output.contains("EXAMPLES"))
        #expect(result.output.contains("--json"))
    }
}

@Suite("sharemail lint")
struct LintTests {
    @Test("a clean file: exit 0")
    func clean() throws {
        let result = try CLI.run(["lint", "--config", CLI.exampleConfig])
        #expect(result.status == 0)
        #expect(result.output.contains("OK: 1 mailbox(es), 2 staff"))
    }

    @Test("the memory: on by default in /var/lib/sharemail, \"off\" accepted, a relative path refused")
    func state() throws {
        let example = try String(contentsOfFile: CLI.exampleConfig, encoding: .utf8)
        #expect(!example.split(separator: "\n").contains { $0.hasPrefix("state") }, "the example leaves state at its default")
        let byDefault = try CLI.run(["lint", "--config", CLI.exampleConfig])
        #expect(byDefault.status == 0)
        #expect(byDefault.output.contains("conversation memory: /var/lib/sharemail/state.sqlite (the default"), "\(byDefault.output)")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sharemail-lint-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        for (line, status, said) in [
            ("state = \"off\"", Int32(0), "conversation memory: off"),
            ("state = \"state.sqlite\"", Int32(78), ":1: state: \"state.sqlite\" is neither"),
        ] {
            let file = directory.appendingPathComponent("f.toml").path
            try (line + "\n" + example).write(toFile: file, atomically: true, encoding: .utf8)
            let result = try CLI.run(["lint", "--config", file])
            #expect(result.status == status, "\(line): \(result.output)")
            #expect(result.output.contains(said), "\(line): \(result.output)")
        }
    }

    @Test("every problem in one run, with file, line and key; exit 78")
    func problems() throws {
        let result = try CLI.run(["lint", "--config", "bad.toml"])
        #expect(result.status == 78)
        try CLI.expectGolden(result.output, "lint-bad.txt")
    }
}

@Suite("sharemail serve")
struct ServeTests {
    @Test("refuses to start on a bad configuration, naming every error")
    func refusesBadConfig() throws {
        let result = try CLI.run(["serve", "--config", "bad.toml"])
        #expect(result.status == 78)
        #expect(result.error.contains("bad.toml:2: colour: unknown key"))
        #expect(result.error.contains("bad.toml:4: mailbox[0].address"))
    }
}

/// `log` and `assign` on a SQLite memory nobody has started yet (issue 11).
@Suite("sharemail log and assign: the state file")
struct StateFileTests {
    /// A fresh directory with a configuration whose `state` is `directory/state.sqlite`.
    struct Scratch {
        let directory: String
        let config: String
        var state: String { directory + "/state.sqlite" }

        init() throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("sharemail-state-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            config = directory + "/sharemail.toml"
            let example = try String(contentsOfFile: CLI.exampleConfig, encoding: .utf8)
            try ("state = \"\(directory)/state.sqlite\"\n" + example).write(toFile: config, atomically: true, encoding: .utf8)
        }

        func remove() { try? FileManager.default.removeItem(atPath: directory) }

        func files() throws -> Set<String> { Set(try FileManager.default.contentsOfDirectory(atPath: directory)) }
    }

    @Test("log where no database is: exit 66, says so, creates nothing")
    func logCreatesNothing() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let result = try CLI.run(["log", "--config", scratch.config])
        #expect(result.status == 66, "\(result.output)\(result.error)")
        #expect(result.error.contains("no conversation memory at \(scratch.state) yet"), "\(result.error)")
        #expect(try scratch.files() == ["sharemail.toml"])
        // Also with the directory missing: not created either.
        let deeper = scratch.directory + "/not-yet/state.sqlite"
        try ("state = \"\(deeper)\"\n" + String(contentsOfFile: CLI.exampleConfig, encoding: .utf8))
            .write(toFile: scratch.config, atomically: true, encoding: .utf8)
        #expect(try CLI.run(["log", "--config", scratch.config]).status == 66)
        #expect(try scratch.files() == ["sharemail.toml"])
    }

    @Test(
        "assign as root creates the database 0640 for the owner of its directory, and keeps an existing one's owner",
        .enabled(if: getuid() == 0, "needs root, as an admin runs it"))
    func assignAsRootKeepsOwner() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let nobody = try #require(getpwnam("nobody"))
        let (uid, gid) = (nobody.pointee.pw_uid, nobody.pointee.pw_gid)
        #expect(chown(scratch.directory, uid, gid) == 0)
        let assign = ["assign", "--config", scratch.config, "--customer", "buyer@customer.test", "--to", "lisi"]
        let first = try CLI.run(assign)
        #expect(first.status == 0, "\(first.error)")
        func expectOwned(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) {
            var info = stat()
            #expect(stat(path, &info) == 0, "\(path) missing", sourceLocation: sourceLocation)
            #expect(info.st_mode & 0o777 == 0o640, "\(path): mode \(String(info.st_mode & 0o777, radix: 8))", sourceLocation: sourceLocation)
            #expect(info.st_uid == uid && info.st_gid == gid, "\(path): owner \(info.st_uid):\(info.st_gid)", sourceLocation: sourceLocation)
        }
        expectOwned(scratch.state)
        // A second run finds it and changes neither owner nor mode; log reads what it wrote.
        let second = try CLI.run(assign)
        #expect(second.status == 0, "\(second.error)")
        expectOwned(scratch.state)
        let log = try CLI.run(["log", "--config", scratch.config])
        #expect(log.status == 0 && log.output.contains("(no entries)"), "\(log.output)\(log.error)")
        expectOwned(scratch.state)
    }
}

/// postfix-conf/sharemail.service, as systemd reads it.
@Suite("the shipped systemd unit")
struct UnitTests {
    static let unit = CLI.packageRoot.appendingPathComponent("postfix-conf/sharemail.service").path
    static let analyze = "/usr/bin/systemd-analyze"

    @Test("the default memory's directory is the unit's StateDirectory, and descriptors are plenty")
    func stateDirectoryAndLimits() throws {
        let lines = try String(contentsOfFile: Self.unit, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(lines.contains("ProtectSystem=strict"))
        #expect(lines.contains("StateDirectory=sharemail"), "the default state /var/lib/sharemail/state.sqlite needs it")
        #expect(lines.contains("StateDirectoryMode=0750"))
        let limit = lines.first { $0.hasPrefix("LimitNOFILE=") }.flatMap { Int($0.dropFirst("LimitNOFILE=".count)) }
        #expect((limit ?? 0) >= 65_536, "LimitNOFILE: \(String(describing: limit))")
    }

    @Test("systemd-analyze verify finds nothing to say", .enabled(if: FileManager.default.isExecutableFile(atPath: analyze)))
    func verifies() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sharemail-unit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // The binary as installed would be /usr/local/bin/sharemail: the one just built stands in.
        let text = try String(contentsOfFile: Self.unit, encoding: .utf8)
            .replacingOccurrences(of: "/usr/local/bin/sharemail", with: CLI.binary)
        let copy = directory.appendingPathComponent("sharemail.service").path
        try text.write(toFile: copy, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.analyze)
        process.arguments = ["verify", "--man=no", copy]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let said = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0 && said.isEmpty, "\(said)")
    }
}
