import SeedTeam
import ShareMail
import Testing

/// Issue 13: round-robin, away and backup, the From-name template, what
/// the memory is told for `pending`; and their lint rules.
let teamTOML = """
    state = "/var/lib/sharemail/state.sqlite"

    [[mailbox]]
    address = "sales@example.com"
    manager = "manager@example.com"
    unnamed = "round-robin"
    from_name = "{name} | Example Sales"

      [[mailbox.staff]]
      name = "Zhangsan"
      address = "zhangsan@example.com"
      login = "zhangsan"

      [[mailbox.staff]]
      name = "Lisi"
      address = "lisi@example.com"
      login = "lisi"

      [[mailbox.staff]]
      name = "Wangwu"
      address = "wangwu@example.com"
      login = "wangwu"
      away = true
      backup = "lisi"

      [[mailbox.staff]]
      name = "Zhaoliu"
      address = "zhaoliu@example.com"
      login = "zhaoliu"
      away = true

    [[mailbox]]
    address = "support@example.org"

      [[mailbox.staff]]
      name = "Qianqi"
      address = "qianqi@example.org"
    """

private func problems(_ toml: String) -> [String] {
    do {
        _ = try ConfigurationLoader.load(text: toml, file: "t.toml")
        return []
    } catch {
        return error.problems.map(\.description)
    }
}

@Suite("Configuration of round-robin, away, backup and from_name (issue 13)")
struct TeamConfigurationTests {
    @Test("the keys as the issue gives them")
    func keys() throws {
        let configuration = try ConfigurationLoader.load(text: teamTOML, file: "t.toml").0
        let sales = configuration.mailboxes[0]
        #expect(sales.unnamed == .roundRobin)
        #expect(sales.fromName.render("Zhangsan") == "Zhangsan | Example Sales")
        #expect(sales.staff[2].away && sales.staff[2].backup == "lisi")
        #expect(!sales.staff[0].away && sales.staff[0].backup == nil)
        #expect(configuration.mailboxes[1].unnamed == .manager && configuration.mailboxes[1].fromName == .plain)
        let directory = Directory(configuration)
        let wangwu = try #require(directory.staff(login: "wangwu"))
        #expect(directory.backup(of: wangwu) == directory.staff(login: "lisi"))
        #expect(directory.backup(of: try #require(directory.staff(login: "zhaoliu"))) == nil)
        #expect(directory.publicName(wangwu) == "Wangwu | Example Sales")
    }

    @Test("forward_unnamed stays: true is all, false is manager")
    func forwardUnnamed() throws {
        let all = try ConfigurationLoader.load(text: seedTOML, file: "t").0
        #expect(all.mailboxes[0].unnamed == .all && all.mailboxes[1].unnamed == .manager)
        let both = seedTOML.replacingOccurrences(of: "forward_unnamed = true", with: "forward_unnamed = true\nunnamed = \"all\"")
        #expect(problems(both).contains { $0.contains("mailbox[0].forward_unnamed: unnamed and forward_unnamed are both set") })
        let unknown = teamTOML.replacingOccurrences(of: "\"round-robin\"", with: "\"random\"")
        #expect(problems(unknown).contains { $0.contains("mailbox[0].unnamed: \"random\" is not a rule") })
    }

    @Test("a backup from another mailbox, one that is away, an unknown one and cycles are errors")
    func backups() {
        let other = teamTOML.replacingOccurrences(of: "backup = \"lisi\"", with: "backup = \"qianqi@example.org\"")
        #expect(problems(other).contains { $0.contains("mailbox[0].staff[2].backup: \"qianqi@example.org\" is staff of mailbox[1], another mailbox") })
        let away = teamTOML.replacingOccurrences(of: "backup = \"lisi\"", with: "backup = \"zhaoliu\"")
        #expect(problems(away).contains { $0.contains("mailbox[0].staff[2].backup: Zhaoliu is away too") })
        let unknown = teamTOML.replacingOccurrences(of: "backup = \"lisi\"", with: "backup = \"nobody\"")
        #expect(problems(unknown).contains { $0.contains("\"nobody\" is no login or address of a staff of this mailbox") })
        // Zhangsan → Lisi → Zhangsan, nobody away.
        let cycle =
            teamTOML
            .replacingOccurrences(of: "  login = \"zhangsan\"\n", with: "  login = \"zhangsan\"\n  backup = \"lisi@example.com\"\n")
            .replacingOccurrences(of: "  login = \"lisi\"\n", with: "  login = \"lisi\"\n  backup = \"zhangsan\"\n")
        let found = problems(cycle)
        #expect(found.contains { $0.contains("backups go round in a cycle (Zhangsan → Lisi → Zhangsan)") }, "\(found)")
        #expect(found.count == 1, "one cycle, one error: \(found)")
        let own = teamTOML.replacingOccurrences(of: "  login = \"zhangsan\"\n", with: "  login = \"zhangsan\"\n  backup = \"zhangsan\"\n")
        #expect(problems(own).contains { $0.contains("cycle (Zhangsan → Zhangsan)") })
    }

    @Test("a template without {name}, an unknown placeholder or a lone brace is an error")
    func templates() {
        for (template, message) in [
            ("Example Sales", "has no {name}"), ("{name} {team}", "unknown placeholder {team}"),
            ("{name} }", "without its partner"), ("{Name}", "unknown placeholder {Name}"),
        ] {
            let toml = teamTOML.replacingOccurrences(of: "{name} | Example Sales", with: template)
            #expect(problems(toml).contains { $0.contains("mailbox[0].from_name: ") && $0.contains(message) }, "\(template)")
        }
        #expect(FromNameTemplate("{name} ({name})")?.render("Li") == "Li (Li)")
        #expect(FromNameTemplate("{name}") == .plain)
    }
}

@Suite("Round-robin, away and backup, from_name in the engine (issue 13)")
struct TeamRoutingTests {
    let engine: PolicyEngine
    let sales = EmailAddress("sales@example.com")!
    let zhangsan = EmailAddress("zhangsan@example.com")!
    let lisi = EmailAddress("lisi@example.com")!
    let wangwu = EmailAddress("wangwu@example.com")!
    let zhaoliu = EmailAddress("zhaoliu@example.com")!

    init() throws {
        engine = PolicyEngine(configuration: try ConfigurationLoader.load(text: teamTOML, file: "t").0)
    }

    func inbound(_ headers: [(String, String)], memory: ConversationMemory? = ConversationMemory()) -> MessageFacts {
        var facts = message(
            internet, from: "<Buyer@Customer.test>", to: ["<sales@example.com>"],
            headers: [("Message-ID", "<m1@customer.test>"), ("Subject", "=?UTF-8?B?6K6i5Y2V?= 42")] + headers)
        if let memory { facts.memory = [sales: memory] }
        return facts
    }

    @Test("a new unnamed conversation asks for a turn among the staff who are not away")
    func asksForTurn() {
        let requests = engine.turnRequests(inbound([("To", "sales@example.com")]))
        #expect(requests == [TurnRequest(mailbox: sales, order: [zhangsan, lisi, wangwu, zhaoliu], available: [zhangsan, lisi])])
        // Without the turn: the manager alone, and the reason says why.
        let d = engine.decide(inbound([("To", "sales@example.com")]))
        #expect(d.added == ["manager@example.com"] && d.rule == "unnamed")
        #expect(d.reasons.contains { $0.hasPrefix("round-robin: a new conversation goes to the staff whose turn it is") })
    }

    @Test("a message placed otherwise takes no turn: named, thread, assignment, auto-generated, staff mail")
    func noTurn() {
        #expect(engine.turnRequests(inbound([("To", "\"Lisi\" <sales@example.com>")])).isEmpty)
        #expect(engine.turnRequests(inbound([("In-Reply-To", "<x@y>")], memory: ConversationMemory(threadOwner: zhangsan))).isEmpty)
        #expect(engine.turnRequests(inbound([], memory: ConversationMemory(assigned: lisi))).isEmpty)
        #expect(engine.turnRequests(inbound([("Auto-Submitted", "auto-replied")])).isEmpty)
        #expect(engine.turnRequests(message(staffLogin("zhangsan"), from: "<zhangsan@example.com>", to: ["<c@customer.test>"])).isEmpty)
        // The other mailbox gives nothing round-robin.
        #expect(engine.turnRequests(message(internet, from: "<c@customer.test>", to: ["<support@example.org>"])).isEmpty)
    }

    @Test("with its turn the conversation goes to that staff, whose thread it becomes")
    func withTurn() {
        let d = engine.decide(inbound([("To", "sales@example.com")], memory: ConversationMemory(turn: lisi)))
        #expect(d.added == ["manager@example.com", "lisi@example.com"])
        #expect(d.rule == "round-robin")
        let customer = EmailAddress("buyer@customer.test")!
        #expect(
            d.memoryUpdates == [
                .turnGiven(messageID: "m1@customer.test", staff: lisi, mailbox: sales, customer: customer),
                .customerWrote(customer: customer, mailbox: sales, staff: lisi, subject: "订单 42"),
            ])
        // A turn naming someone away now (a reload meanwhile) is not used.
        let stale = engine.decide(inbound([], memory: ConversationMemory(turn: wangwu)))
        #expect(stale.added == ["manager@example.com"])
    }

    @Test("mail for an away staff goes to the manager and the backup, by name, thread, assignment or sticky customer")
    func awayWithBackup() {
        let cases: [(headers: [(String, String)], memory: ConversationMemory, rule: String)] = [
            ([("To", "\"Wangwu\" <sales@example.com>")], ConversationMemory(), "named"),
            ([("In-Reply-To", "<w1@example.com>")], ConversationMemory(threadOwner: wangwu), "thread"),
            ([], ConversationMemory(assigned: wangwu), "assigned"),
        ]
        for item in cases {
            let d = engine.decide(inbound(item.headers, memory: item.memory))
            #expect(d.added == ["manager@example.com", "lisi@example.com"], "\(item.rule)")
            #expect(d.rule == item.rule)
            #expect(d.away == [wangwu])
            #expect(d.reasons.contains("away: Wangwu is away: to the manager and the backup Lisi"), "\(d.reasons)")
            #expect(engine.turnRequests(inbound(item.headers, memory: item.memory)).isEmpty)
        }
    }

    @Test("an away staff without a backup: the manager alone")
    func awayWithoutBackup() {
        let d = engine.decide(inbound([("To", "\"Zhaoliu | Example Sales\" <sales@example.com>")]))
        #expect(d.added == ["manager@example.com"])
        #expect(d.away == [zhaoliu])
        #expect(d.reasons.contains("away: Zhaoliu is away and has no backup: manager only"))
    }

    @Test("sticky customers of an away staff go to the backup; forward to all skips those away")
    func stickyAndAll() throws {
        let toml = teamTOML.replacingOccurrences(of: "unnamed = \"round-robin\"", with: "unnamed = \"all\"\nsticky_customers = true")
        let engine = PolicyEngine(configuration: try ConfigurationLoader.load(text: toml, file: "t").0)
        let sticky = engine.decide(inbound([], memory: ConversationMemory(lastStaff: wangwu)))
        #expect(sticky.added == ["manager@example.com", "lisi@example.com"] && sticky.rule == "sticky")
        let all = engine.decide(inbound([]))
        #expect(all.added == ["manager@example.com", "zhangsan@example.com", "lisi@example.com"])
        #expect(all.reasons.contains { $0.contains("all 2 staff of sales@example.com (2 away)") })
    }

    @Test("staff mail leaves under the template; RFC 2047 when the name needs it")
    func fromName() throws {
        let d = engine.decide(
            message(
                staffLogin("zhangsan"), from: "<zhangsan@example.com>", to: ["<c@customer.test>"],
                headers: [("From", "Zhangsan <zhangsan@example.com>"), ("Cc", "zhangsan@example.com")]))
        // "|" is an atext character: the phrase needs no quotes.
        #expect(d.change("From")?.value == "Zhangsan | Example Sales <sales@example.com>")
        #expect(d.change("Cc")?.value == "Zhangsan | Example Sales <sales@example.com>")
        let toml = teamTOML.replacingOccurrences(of: "{name} | Example Sales", with: "{name} · 销售部")
        let chinese = PolicyEngine(configuration: try ConfigurationLoader.load(text: toml, file: "t").0)
        let encoded = chinese.decide(
            message(
                staffLogin("lisi"), from: "<lisi@example.com>", to: ["<c@customer.test>"],
                headers: [("From", "lisi@example.com")]))
        let from = try #require(encoded.change("From")?.value)
        #expect(from.hasPrefix("=?UTF-8?") && from.hasSuffix("<sales@example.com>") && from.allSatisfy(\.isASCII), "\(from)")
    }

    @Test("a reply to the rendered name and to the plain name both reach the staff")
    func replyToRenderedName() {
        for to in [
            "\"Zhangsan | Example Sales\" <sales@example.com>", "\"zhangsan  |  example sales\" <sales@example.com>",
            "Zhangsan <sales@example.com>", "=?UTF-8?Q?Zhangsan_|_Example_Sales?= <sales@example.com>",
        ] {
            let d = engine.decide(inbound([("To", to)]))
            #expect(d.added == ["manager@example.com", "zhangsan@example.com"], "\(to): \(d.reasons)")
            #expect(d.rule == "named")
        }
    }

    @Test("auto-generated mail waits for nobody; the customer's own message does, for whoever got it")
    func waiting() {
        #expect(
            !engine.decide(inbound([("Auto-Submitted", "auto-replied")])).memoryUpdates.contains {
                if case .customerWrote = $0 { true } else { false }
            })
        let d = engine.decide(inbound([("To", "\"Lisi\" <sales@example.com>")]))
        #expect(
            d.memoryUpdates == [
                .customerWrote(
                    customer: EmailAddress("buyer@customer.test")!, mailbox: sales, staff: lisi,
                    subject: "订单 42")
            ])
    }
}
