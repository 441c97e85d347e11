import ArgumentParser
import Foundation
import ShareMail
import ShareMailStore

/// `sharemail pending`: the conversations a customer is waiting on, for the
/// manager's morning list (or a cron job that mails it).
struct Pending: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pending",
        abstract: "List the conversations waiting for a staff's answer.",
        discussion: """
            A conversation is pending when its customer's latest message to a unified \
            address has no staff answer since (auto-replies and bounces do not count). \
            One row each, the longest-waiting first: how long the customer has waited \
            (since their first unanswered message), the unified address, the customer, \
            the staff who has it (or "unassigned") and the subject. Only reads: a missing \
            database is reported, never created.

            EXIT STATUS
              0 listed (also when nothing is pending), 64 bad usage, 66 no database yet
              (sharemail serve creates it), 69 the store is unreachable, 78 bad
              configuration or state = "off".

            EXAMPLES
              sharemail pending --older-than 4h
              sharemail pending --mailbox sales@example.com --json
            """
    )

    @OptionGroup var configurationFile: ConfigurationFileOption
    var config: String { configurationFile.config }

    @Option(name: .long, help: ArgumentHelp("Only this unified address.", valueName: "address"))
    var mailbox: String?

    @Option(
        name: .customLong("older-than"),
        help: ArgumentHelp("Only those waiting at least this long: 90s, 30m, 4h, 2d, or 1h30m.", valueName: "duration"))
    var olderThan: String?

    @Flag(name: .long, help: "Print a JSON array instead of a table.")
    var json = false

    /// The time to measure waiting against (tests and reproducible reports).
    @Option(name: .long, help: .hidden)
    var now: String?

    func validate() throws {
        if let mailbox, EmailAddress(mailbox) == nil { throw ValidationError("--mailbox: \"\(mailbox)\" is not an address") }
        if let olderThan, Self.seconds(olderThan) == nil {
            throw ValidationError("--older-than: \"\(olderThan)\" is not a duration such as 30m, 4h, 2d or 1h30m")
        }
        if let now, Log.parseDate(now) == nil { throw ValidationError("--now: \"\(now)\" is not an ISO 8601 time") }
    }

    /// "1h30m" → 5400; nil for anything else.
    static func seconds(_ text: String) -> Int? {
        let units: [Character: Int] = ["s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800]
        var total = 0
        var number = ""
        for character in text.lowercased() {
            if character.isASCII, character.isNumber {
                number.append(character)
            } else if let unit = units[character], let value = Int(number), value <= 1_000_000 {
                total += value * unit
                number = ""
            } else {
                return nil
            }
        }
        return number.isEmpty && !text.isEmpty ? total : nil
    }

    /// A waiting time as a person reads it: 45s, 12m, 4h05m, 3d04h.
    static func waiting(_ seconds: Int) -> String {
        let seconds = max(0, seconds)
        switch seconds {
        case ..<60: return "\(seconds)s"
        case ..<3_600: return "\(seconds / 60)m"
        case ..<86_400: return "\(seconds / 3_600)h" + String(format: "%02dm", seconds % 3_600 / 60)
        default: return "\(seconds / 86_400)d" + String(format: "%02dh", seconds % 86_400 / 3_600)
        }
    }

    func run() throws {
        let (configuration, store) = try openStore(config: config, command: "pending", readOnly: true)
        defer { store.close() }
        let now = self.now.flatMap(Log.parseDate) ?? Date()
        let filter = PendingFilter(
            mailbox: mailbox.flatMap { EmailAddress($0)?.value },
            waitingSince: olderThan.flatMap(Self.seconds).map { now.addingTimeInterval(-Double($0)) })
        let conversations: [PendingConversation]
        do {
            conversations = try store.pending(filter)
        } catch {
            throw CommandFailure("sharemail pending: \(error)", .unavailable)
        }
        let formatter = ISO8601DateFormatter()
        let names = Dictionary(configuration.mailboxes.flatMap(\.staff).map { ($0.address.value, $0.name) }, uniquingKeysWith: { a, _ in a })
        if json {
            let objects: [[String: Any]] = conversations.map { conversation in
                [
                    "mailbox": conversation.mailbox, "customer": conversation.customer, "subject": conversation.subject,
                    "staff": conversation.staff ?? NSNull(), "waiting_since": formatter.string(from: conversation.since),
                    "waiting_seconds": Int(now.timeIntervalSince(conversation.since)),
                ]
            }
            let data = try JSONSerialization.data(withJSONObject: objects, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        var rows = [["WAITING", "MAILBOX", "CUSTOMER", "STAFF", "SUBJECT"]]
        for conversation in conversations {
            rows.append([
                Self.waiting(Int(now.timeIntervalSince(conversation.since))), conversation.mailbox, conversation.customer,
                conversation.staff.map { names[$0] ?? $0 } ?? "unassigned",
                conversation.subject.isEmpty ? "(no subject)" : conversation.subject,
            ])
        }
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            print(
                zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
                    .trimmingCharacters(in: .whitespaces))
        }
        if conversations.isEmpty { print("(nothing pending)") }
    }
}
