import ArgumentParser

@main
struct Sharemail: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sharemail",
        abstract: "A shared-mailbox milter for Postfix: one public address, a team behind it.",
        discussion: """
            sharemail makes one address (say sales@example.com) work as a team inbox: \
            Internet mail lands in the manager mailbox (and with the staff it names), \
            staff replies leave under the unified address with the staff's name, and \
            the manager keeps a copy of everything. Postfix does all delivery; \
            sharemail only decides, as a milter.
            """,
        version: SharemailVersion.current,
        subcommands: [Serve.self, Check.self, Lint.self, Doctor.self, Assign.self, Log.self, Pending.self, Forget.self]
    )

    /// ArgumentParser's main, plus the commands' one error type.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let failure as CommandFailure {
            failure.report()
            exit(withError: failure.code)
        } catch {
            exit(withError: error)
        }
    }
}
