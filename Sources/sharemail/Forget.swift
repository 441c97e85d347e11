import ArgumentParser
import Foundation
import ShareMail
import ShareMailStore

/// `sharemail forget`: erases what the conversation memory holds of one
/// customer (a data-protection request).
struct Forget: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forget",
        abstract: "Delete what the conversation memory holds of a customer.",
        discussion: """
            Deletes, in one transaction, the customer's sent-message records (a message \
            that also went to others only loses this customer), their assignment, every \
            audit entry that names them (as sender, recipient or customer) and their \
            pending conversations, and prints how many of each. Mail itself (Maildirs, \
            Postfix's logs) is not sharemail's to delete. With --dry-run, counts and \
            changes nothing.

            EXIT STATUS
              0 done, 64 bad usage, 66 no database yet (with --dry-run), 69 the store is
              unreachable, 78 bad configuration or state = "off".

            EXAMPLES
              sharemail forget --customer buyer@customer.test --dry-run
              sharemail forget --customer buyer@customer.test
            """
    )

    @OptionGroup var configurationFile: ConfigurationFileOption
    var config: String { configurationFile.config }

    @Option(name: .long, help: ArgumentHelp("The customer's address.", valueName: "address"))
    var customer: String

    @Flag(name: .customLong("dry-run"), help: "Only count what would be deleted.")
    var dryRun = false

    func validate() throws {
        if EmailAddress(customer) == nil { throw ValidationError("--customer: \"\(customer)\" is not an address") }
    }

    func run() throws {
        let address = EmailAddress(customer)!
        let (_, store) = try openStore(config: config, command: "forget", readOnly: dryRun)
        defer { store.close() }
        let report: ForgetReport
        do {
            report = try store.forget(customer: address.value, dryRun: dryRun)
        } catch {
            throw CommandFailure("sharemail forget: \(error)", .unavailable)
        }
        print(dryRun ? "would forget \(address) (dry run: nothing deleted):" : "forgot \(address):")
        print("  sent messages:          \(report.sentMessages)")
        print("  assignments:            \(report.assignments)")
        print("  audit entries:          \(report.auditEntries)")
        print("  pending conversations:  \(report.pendingConversations)")
    }
}
