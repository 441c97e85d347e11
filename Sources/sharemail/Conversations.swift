import ArgumentParser
import Foundation
import Logging
import MailHeaders
import ShareMail
import ShareMailDaemon
import ShareMailStore

/// Opens the configured conversation memory for a command-line tool. `readOnly`
/// (`log`): never creates a database; a missing one exits 66 (EX_NOINPUT).
func openStore(config path: String, command: String, readOnly: Bool = false) throws -> (Configuration, any ConversationStore) {
    let file: ConfigurationFile
    do {
        file = try ConfigurationFile.load(path).0
    } catch {
        throw CommandFailure("\(error)", .configurationError)
    }
    guard let state = file.daemon.state, let location = StoreLocation(state) else {
        throw CommandFailure("\(path): state = \"off\": sharemail keeps no conversation memory", .configurationError)
    }
    do {
        // A person waits here, not a mail: give the database time.
        let store = try Stores.open(location, logger: Logger(label: "sharemail"), timeout: .seconds(5), readOnly: readOnly)
        return (file.policy, store)
    } catch StoreError.notFound(let file) {
        throw CommandFailure(
            """
            sharemail \(command): no conversation memory at \(file) yet (sharemail serve creates it at its first \
            start; nothing was created)
            """, .noInput)
    } catch {
        throw CommandFailure("cannot open the conversation memory \(location.redacted): \(error)", .unavailable)
    }
}

struct Assign: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Hand a conversation to a staff member.",
        discussion: """
            Later mail in the thread, or from the customer, goes to that staff (and the \
            manager), whatever name the customer writes to, until assigned again. A \
            thread assignment wins over a customer assignment. An existing database keeps \
            its owner and mode; one that assign has to create as root (before the first \
            start, or after the file was deleted) is given to the owner of its directory, \
            the daemon's user under the shipped unit. The running daemon notices a new \
            file at its next message.

            EXIT STATUS
              0 assigned, 64 bad usage or unknown staff, 69 the store is unreachable,
              78 bad configuration or state = "off".

            EXAMPLES
              sharemail assign --thread '<CAF1234@mail.customer.test>' --to lisi
              sharemail assign --customer buyer@customer.test --to zhangsan@example.com
            """
    )

    @OptionGroup var configurationFile: ConfigurationFileOption
    var config: String { configurationFile.config }

    @Option(name: .long, help: ArgumentHelp("A Message-ID of the thread (with or without <>).", valueName: "message-id"))
    var thread: String?

    @Option(name: .long, help: ArgumentHelp("The customer's address.", valueName: "address"))
    var customer: String?

    @Option(name: .long, help: ArgumentHelp("The staff: login or address.", valueName: "staff"))
    var to: String

    func validate() throws {
        guard (thread == nil) != (customer == nil) else { throw ValidationError("give exactly one of --thread and --customer") }
        if let customer, EmailAddress(customer) == nil { throw ValidationError("--customer: \"\(customer)\" is not an address") }
        if let thread, MessageIDs.parse(thread.contains("<") ? thread : "<\(thread)>").isEmpty {
            throw ValidationError("--thread: \"\(thread)\" is not a Message-ID")
        }
    }

    func run() throws {
        let (configuration, store) = try openStore(config: config, command: "assign")
        defer { store.close() }
        let directory = Directory(configuration)
        guard let reference = directory.staff(loginOrAddress: to) else {
            throw CommandFailure("sharemail assign: \"\(to)\" is no staff login or address in \(config)", .usage)
        }
        let staff = directory.staff(reference)
        let mailbox = directory.mailbox(reference)
        let assignment: Assignment
        let what: String
        if let thread {
            let id = MessageIDs.parse(thread.contains("<") ? thread : "<\(thread)>")[0]
            assignment = .thread(messageID: id)
            what = "thread <\(id)>"
        } else {
            let address = EmailAddress(customer!)!
            assignment = .customer(address: address.value)
            what = "customer \(address)"
        }
        do {
            try store.assign(assignment, to: staff.address.value, mailbox: mailbox.address.value, at: Date())
        } catch {
            throw CommandFailure("sharemail assign: \(error)", .unavailable)
        }
        print("\(what) of \(mailbox.address) is assigned to \(staff.name) <\(staff.address)>")
    }
}

struct Log: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log",
        abstract: "Show who handled which customer: the manager's audit view.",
        discussion: """
            One line per message sharemail decided on, newest first (also with --json): \
            time, Postfix queue id, direction (inbound, staff, internal), sender, \
            recipients, action, the rule that decided, and the staff concerned. Only \
            reads: a missing database is reported, never created.

            EXIT STATUS
              0 listed, 64 bad usage or unknown staff, 66 no database yet (sharemail serve
              creates it), 69 the store is unreachable, 78 bad configuration or state = "off".

            EXAMPLES
              sharemail log --staff zhangsan --since 2026-11-01
              sharemail log --customer buyer@customer.test --json
            """
    )

    @OptionGroup var configurationFile: ConfigurationFileOption
    var config: String { configurationFile.config }

    @Option(name: .long, help: ArgumentHelp("Only this staff (login or address).", valueName: "staff"))
    var staff: String?

    @Option(name: .long, help: ArgumentHelp("Only this customer.", valueName: "address"))
    var customer: String?

    @Option(name: .long, help: ArgumentHelp("Only since this day (YYYY-MM-DD) or time (ISO 8601).", valueName: "date"))
    var since: String?

    @Option(name: .long, help: "At most this many lines.")
    var limit: Int = 200

    @Flag(name: .long, help: "Print a JSON array instead of a table.")
    var json = false

    func validate() throws {
        if let since, Self.parseDate(since) == nil { throw ValidationError("--since: \"\(since)\" is not YYYY-MM-DD or an ISO 8601 time") }
        if limit < 1 { throw ValidationError("--limit must be at least 1") }
    }

    static func parseDate(_ text: String) -> Date? {
        let full = ISO8601DateFormatter()
        if let date = full.date(from: text) { return date }
        let day = ISO8601DateFormatter()
        day.formatOptions = [.withFullDate]
        return day.date(from: text)
    }

    func run() throws {
        let (configuration, store) = try openStore(config: config, command: "log", readOnly: true)
        defer { store.close() }
        let directory = Directory(configuration)
        var staffAddress: String?
        if let staff {
            guard let reference = directory.staff(loginOrAddress: staff) else {
                throw CommandFailure("sharemail log: \"\(staff)\" is no staff login or address", .usage)
            }
            staffAddress = directory.staff(reference).address.value
        }
        let entries: [AuditEntry]
        do {
            // The store gives the newest `limit` entries oldest first; the manager reads the newest first.
            entries = try store.auditLog(
                LogFilter(
                    staff: staffAddress, customer: customer.flatMap { EmailAddress($0)?.value },
                    since: since.flatMap(Self.parseDate), limit: limit)
            ).reversed()
        } catch {
            throw CommandFailure("sharemail log: \(error)", .unavailable)
        }
        let formatter = ISO8601DateFormatter()
        if json {
            let objects: [[String: Any]] = entries.map { entry in
                [
                    "time": formatter.string(from: entry.time), "queue_id": entry.queueID, "direction": entry.direction,
                    "sender": entry.sender, "recipients": entry.recipients, "action": entry.action, "rule": entry.rule,
                    "staff": entry.staff ?? NSNull(), "mailbox": entry.mailbox ?? NSNull(), "customer": entry.customer ?? NSNull(),
                ]
            }
            let data = try JSONSerialization.data(withJSONObject: objects, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        let names = Dictionary(configuration.mailboxes.flatMap(\.staff).map { ($0.address.value, $0.name) }, uniquingKeysWith: { a, _ in a })
        var rows = [["TIME", "QUEUE ID", "DIRECTION", "FROM", "TO", "ACTION", "RULE", "STAFF"]]
        for entry in entries {
            rows.append([
                formatter.string(from: entry.time), entry.queueID, entry.direction, entry.sender.isEmpty ? "<>" : entry.sender,
                entry.recipients.joined(separator: ","), entry.action, entry.rule,
                entry.staff.map { names[$0] ?? $0 } ?? "-",
            ])
        }
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            print(
                zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
                    .trimmingCharacters(in: .whitespaces))
        }
        if entries.isEmpty { print("(no entries)") }
    }
}
