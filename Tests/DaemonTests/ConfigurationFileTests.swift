import SeedTeam
import ShareMail
import ShareMailDaemon
import Testing

/// The whole file as the daemon, lint and doctor load it: the policy and the
/// daemon's settings, every problem of either with its key and line.
@Suite("Configuration loading")
struct ConfigurationFileTests {
    @Test("the seed configuration loads with its defaults")
    func seed() throws {
        let (file, warnings) = try ConfigurationFile.load(text: seedTOML, file: "seed.toml")
        let configuration = file.policy
        #expect(warnings.isEmpty)
        #expect(configuration.mailboxes.count == 2)
        let sales = configuration.mailboxes[0]
        #expect(sales.manager.value == "manager@example.com")
        #expect(sales.staff[0].receiveInternet == false)
        #expect(sales.staff[0].sendInternet == true)
        #expect(configuration.mailboxes[1].manager.value == "support@example.org")  // manager defaults to address
        #expect(configuration.mailboxes[1].staff[0].login == "zhaoliu@example.org")  // login defaults to address
        #expect(configuration.mailboxes[1].forwardUnnamed == false)
        #expect(file.daemon.drainTimeoutSeconds == 30)
    }

    /// The policy (round-robin) and the daemon's settings (state) together: only the whole
    /// file can tell.
    @Test("round-robin with the memory off is an error")
    func roundRobinNeedsMemory() throws {
        let team = """
            state = "/var/lib/sharemail/state.sqlite"

            [[mailbox]]
            address = "sales@example.com"
            unnamed = "round-robin"

              [[mailbox.staff]]
              name = "Zhangsan"
              address = "zhangsan@example.com"
            """
        let off = team.replacingOccurrences(of: "state = \"/var/lib/sharemail/state.sqlite\"", with: "state = \"off\"")
        #expect(
            problems(off).contains { $0.contains("f.toml:5: mailbox[0].unnamed: \"round-robin\" needs the conversation memory") },
            "\(problems(off))")
        #expect(problems(team).isEmpty)
        #expect(problems(team.replacingOccurrences(of: "round-robin", with: "all")).isEmpty)
        #expect(problems(off.replacingOccurrences(of: "round-robin", with: "all")).isEmpty)
    }

    @Test("drain_timeout_seconds: 0 (stop at once) to an hour; anything else names the key")
    func drainTimeout() throws {
        let mailbox = "\n[[mailbox]]\naddress = \"sales@example.com\"\n"
        #expect(try ConfigurationFile.load(text: "drain_timeout_seconds = 0" + mailbox, file: "f.toml").0.daemon.drainTimeoutSeconds == 0)
        #expect(try ConfigurationFile.load(text: "drain_timeout_seconds = 120" + mailbox, file: "f.toml").0.daemon.drainTimeoutSeconds == 120)
        #expect(problems("drain_timeout_seconds = -1" + mailbox).contains { $0.hasPrefix("f.toml:1: drain_timeout_seconds:") })
        #expect(problems("drain_timeout_seconds = 3601" + mailbox).contains { $0.hasPrefix("f.toml:1: drain_timeout_seconds:") })
        #expect(problems("drain_timeout_seconds = \"30\"" + mailbox).contains { $0.hasPrefix("f.toml:1: drain_timeout_seconds:") })
    }

    @Test("manager_login defaults to the manager address; a staff login may not be a manager's")
    func managerLogin() throws {
        let configuration = try ConfigurationFile.load(text: seedTOML, file: "seed.toml").0.policy
        #expect(configuration.mailboxes[0].managerLogin == "manager")
        #expect(configuration.mailboxes[1].managerLogin == "support@example.org")
        let clash = """
            [[mailbox]]
            address = "sales@example.com"
            manager_login = "boss"

              [[mailbox.staff]]
              name = "Boss"
              address = "boss@example.com"
              login = "boss"
            """
        #expect(problems(clash).contains("f.toml:8: mailbox[0].staff[0].login: login \"boss\" is already used by mailbox[0].manager_login"))
        #expect(
            problems("[[mailbox]]\naddress = \"s@example.com\"\nmanager_login = \"a b\"\n")
                .contains { $0.hasPrefix("f.toml:3: mailbox[0].manager_login:") })
    }

    @Test("state: memory on by default in /var/lib/sharemail; \"off\" turns it off; a relative path names the key")
    func state() throws {
        let mailbox = "\n[[mailbox]]\naddress = \"sales@example.com\"\n"
        func state(_ line: String) throws -> String? { try ConfigurationFile.load(text: line + mailbox, file: "f.toml").0.daemon.state }
        #expect(try state("") == "/var/lib/sharemail/state.sqlite")
        #expect(try state("state = \"off\"") == nil)
        #expect(try state("state = \"/srv/x.sqlite\"") == "/srv/x.sqlite")
        #expect(try state("state = \"postgresql://sharemail@db/sharemail\"") == "postgresql://sharemail@db/sharemail")
        for bad in ["", "state.sqlite", "Off", "no"] {
            #expect(problems("state = \"\(bad)\"" + mailbox).contains { $0.hasPrefix("f.toml:1: state:") }, "\(bad)")
        }
    }

    @Test("recipient_delimiter: default +, empty for none, never @ or spaces")
    func recipientDelimiter() throws {
        let mailbox = "\n[[mailbox]]\naddress = \"sales@example.com\"\n"
        #expect(try ConfigurationFile.load(text: mailbox, file: "f.toml").0.policy.recipientDelimiter == "+")
        #expect(try ConfigurationFile.load(text: "recipient_delimiter = \"\"" + mailbox, file: "f.toml").0.policy.recipientDelimiter == "")
        #expect(try ConfigurationFile.load(text: "recipient_delimiter = \"+-\"" + mailbox, file: "f.toml").0.policy.recipientDelimiter == "+-")
        for bad in ["@", "+ ", "\\\""] {
            #expect(problems("recipient_delimiter = \"\(bad)\"" + mailbox).contains { $0.hasPrefix("f.toml:1: recipient_delimiter:") }, "\(bad)")
        }
    }

    func problems(_ toml: String) -> [String] {
        do {
            _ = try ConfigurationFile.load(text: toml, file: "f.toml")
            return []
        } catch {
            return error.problems.map(\.description)
        }
    }

    @Test("unknown keys, missing keys and bad addresses name the key and line")
    func errorsNameKeyAndLine() {
        let found = problems(
            """
            socket = "unix:/x"
            colour = "blue"
            [[mailbox]]
            address = "sales@"
              [[mailbox.staff]]
              address = "zhangsan@example.com"
              recieve_internet = true
            """)
        #expect(
            found.contains(
                "f.toml:2: colour: unknown key (known here: drain_timeout_seconds, header_fallback_charset, log, log_level, mailbox, metrics, recipient_delimiter, retention_days, socket, socket_group, socket_mode, socket_owner, state, state_timeout_ms, trusted_networks)"
            ))
        #expect(found.contains("f.toml:4: mailbox[0].address: \"sales@\" is not an email address (write local@domain)"))
        #expect(found.contains("f.toml:5: mailbox[0].staff[0].name: is required"))
        #expect(found.contains { $0.hasPrefix("f.toml:7: mailbox[0].staff[0].recieve_internet: unknown key") })
    }

    @Test("duplicate staff addresses, logins and matching names are errors")
    func duplicates() {
        let found = problems(
            """
            [[mailbox]]
            address = "sales@example.com"
              [[mailbox.staff]]
              name = "Zhang San"
              address = "zhangsan@example.com"
              login = "zs"
              [[mailbox.staff]]
              name = "ｚｈａｎｇ　ｓａｎ"
              address = "ZhangSan@example.com"
              login = "ZS"
            """)
        #expect(found.contains { $0.hasPrefix("f.toml:9: mailbox[0].staff[1].address: zhangsan@example.com is already staff") })
        #expect(found.contains { $0.hasPrefix("f.toml:10: mailbox[0].staff[1].login: login \"ZS\" is already used") })
        #expect(found.contains { $0.hasPrefix("f.toml:8: mailbox[0].staff[1].name: \"zhang san\" matches the same way") })
    }

    @Test("a staff address may not be a unified or manager address")
    func staffIsNotAMailbox() {
        let found = problems(
            """
            [[mailbox]]
            address = "sales@example.com"
            manager = "boss@example.com"
              [[mailbox.staff]]
              name = "Boss"
              address = "boss@example.com"
            """)
        #expect(found.contains { $0.contains("mailbox[0].staff[0].address: boss@example.com is a unified or manager address") })
    }

    @Test(
        "wrong types and syntax errors are reported, not crashed on",
        arguments: [
            "socket = 5", "trusted_networks = \"10.0.0.0/8\"", "trusted_networks = [\"10.0.0.0/33\"]", "mailbox = 3",
            "[[mailbox]]\naddress = \"a@b.c\"\nforward_unnamed = \"yes\"", "[[mailbox]\n", "socket_mode = \"999\"",
            "[[mailbox]]\naddress = \"a@b.c\"\nstaff = [1]",
        ])
    func badTypes(toml: String) {
        #expect(!problems(toml).isEmpty)
    }

    @Test("a TOML syntax error gives its line")
    func syntaxLine() {
        #expect(problems("socket = \"x\"\n\n= broken").first?.hasPrefix("f.toml:3:") == true)
    }
}

@Suite("Daemon settings: what a reload cannot apply")
struct DaemonSettingsTests {
    @Test("every daemon key that changed is named; the policy's keys never are")
    func restartKeys() throws {
        let mailbox = "\n[[mailbox]]\naddress = \"sales@example.com\"\n"
        let running = try ConfigurationFile.load(text: mailbox, file: "a.toml").0.daemon
        let changed = try ConfigurationFile.load(
            text: "log_level = \"debug\"\nstate_timeout_ms = 50\ndrain_timeout_seconds = 5\ntrusted_networks = [\"10.0.0.0/8\"]" + mailbox,
            file: "b.toml"
        ).0.daemon
        #expect(changed.restartKeys(changedFrom: running) == ["log_level", "state_timeout_ms", "drain_timeout_seconds"])
        #expect(running.restartKeys(changedFrom: running).isEmpty)
        #expect(running == DaemonSettings())  // the file's defaults are the type's
    }
}
