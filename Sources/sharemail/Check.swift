import ArgumentParser
import Foundation
import ShareMail
import ShareMailDaemon

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what sharemail would do with a message, without sending anything.",
        discussion: """
            Runs the same engine as `sharemail serve` on an envelope and, optionally, a \
            message (a file, or - for standard input; the headers are enough). Prints \
            the verdict with its SMTP reply, the recipients added and removed, the \
            envelope sender change, each header change, and the reasons in order.

            Without a message only the envelope rules are checked (RCPT refusals, \
            recipient changes).

            The sender is the Internet unless --login (an SMTP AUTH login), --local \
            (the sendmail command on the host) or a --client-ip in trusted_networks \
            says otherwise.

            Give addresses as Postfix resolves them (user@domain): the daemon reads \
            Postfix's own resolution ({mail_addr}, {rcpt_addr}), and check has no \
            Postfix to ask, so a bang path, a percent hack or a bare name is \
            reported as one the daemon could not place.

            EXIT STATUS
              0 accept, 1 reject or tempfail, 64 bad usage, 65 unreadable message,
              78 bad configuration.

            EXAMPLES
              A customer replies to "Zhangsan" <sales@example.com>:
                sharemail check --config /etc/sharemail/sharemail.toml \\
                    --from customer@customer.test --rcpt sales@example.com reply.eml

              Zhangsan writes to a customer, as JSON:
                sharemail check --config sharemail.toml --login zhangsan \\
                    --from zhangsan@example.com --rcpt customer@customer.test --json - < draft.eml

              Would the Internet reach Lisi directly?
                sharemail check --config sharemail.toml --from x@customer.test --rcpt lisi@example.com
            """
    )

    @OptionGroup var configurationFile: ConfigurationFileOption
    var config: String { configurationFile.config }

    @Option(name: .long, help: ArgumentHelp("Envelope sender (MAIL FROM); \"\" for the null sender.", valueName: "address"))
    var from: String

    @Option(name: .long, help: ArgumentHelp("Envelope recipient (RCPT TO); repeat for several.", valueName: "address"))
    var rcpt: [String] = []

    @Option(name: .long, help: ArgumentHelp("SASL login of the SMTP session.", valueName: "name"))
    var login: String?

    @Option(name: .customLong("client-ip"), help: ArgumentHelp("Address of the SMTP client.", valueName: "ip"))
    var clientIP: String?

    @Flag(name: .long, help: "The message comes from the sendmail command on this host.")
    var local = false

    @Flag(name: .long, help: "Print one JSON object instead of text.")
    var json = false

    @Argument(help: ArgumentHelp("The message, or - for standard input.", valueName: "message"))
    var message: String?

    func validate() throws {
        if rcpt.isEmpty { throw ValidationError("give at least one --rcpt") }
        if local && (login != nil || clientIP != nil) {
            throw ValidationError("--local cannot go with --login or --client-ip: the sendmail command has neither")
        }
        if let clientIP, IPAddress(clientIP) == nil { throw ValidationError("--client-ip: \"\(clientIP)\" is not an IP address") }
    }

    func run() throws {
        let engine: PolicyEngine
        do {
            engine = PolicyEngine(configuration: try ConfigurationFile.load(config).0.policy)
        } catch {
            throw CommandFailure("sharemail check: \(error)", .configurationError)
        }
        var headers: [Header]?
        if let message {
            do {
                let data =
                    message == "-"
                    ? FileHandle.standardInput.readDataToEndOfFile()
                    : try Data(contentsOf: URL(fileURLWithPath: message))
                headers = HeaderBlock.parse(Array(data))
            } catch {
                throw CommandFailure("sharemail check: cannot read \(message): \((error as NSError).localizedDescription)", .dataError)
            }
        }

        let submission = Submission(channel: local ? .local : .smtp, login: login, clientAddress: clientIP.flatMap(IPAddress.init))
        let report = CheckReport.evaluate(
            engine: engine, submission: submission, sender: EnvelopeAddress(local ? from : "<\(from)>"),
            recipients: rcpt.map { EnvelopeAddress(local ? $0 : "<\($0)>") }, headers: headers)
        print(json ? report.json() : report.text())
        if report.action != "accept" { throw CommandFailure(nil, .notAccepted) }
    }
}

/// The outcome of `sharemail check`: the RCPT verdicts, then the end of
