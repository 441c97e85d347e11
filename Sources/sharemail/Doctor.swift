import ArgumentParser
import Foundation
import Glibc
import Milter
import ShareMail
import ShareMailDaemon

struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that the live Postfix configuration fits sharemail's.",
        discussion: """
            Reads Postfix's configuration (postconf, postconf -M, postmap -q on the \
            tables it names) and reports, each with how to fix it:
              - sharemail's socket in smtpd_milters and non_smtpd_milters;
              - milter_default_action = tempfail and milter_protocol 6;
              - a chrooted smtpd or cleanup that cannot reach the socket;
              - smtpd_sasl_authenticated_header, which would show staff logins;
              - sharemail placed before a DKIM signer;
              - recipient_delimiter the same in Postfix and sharemail;
              - each unified and manager address accepted and delivered by Postfix;
              - whether a header-strip rule is needed (it is not: sharemail adds no
                private headers);
              - whether sharemail answers on its socket;
              - that the user sharemail runs as can write its state (the conversation
                memory's SQLite file, or the directory it will be created in).

            The daemon's user is --user; by default the User= of the unit (--unit,
            /etc/systemd/system/sharemail.service, where the README installs it, and its
            drop-ins in sharemail.service.d/), else "sharemail".

            EXIT STATUS
              0 no problem found, 1 problems found, 78 bad sharemail configuration.

            EXAMPLES
              sharemail doctor --config /etc/sharemail/sharemail.toml
              sharemail doctor --config sharemail.toml -c /etc/postfix-out
            """
    )

    @OptionGroup var configurationFile: ConfigurationFileOption
    var config: String { configurationFile.config }

    @Option(name: .customShort("c"), help: ArgumentHelp("Postfix configuration directory (postconf -c).", valueName: "dir"))
    var postfixDirectory: String?

    @Option(name: .long, help: ArgumentHelp("The socket sharemail listens on, if not the file's.", valueName: "spec"))
    var socket: String?

    @Option(name: .long, help: ArgumentHelp("The user sharemail serve runs as (default: the unit's User=, else sharemail).", valueName: "name"))
    var user: String?

    @Option(name: .long, help: ArgumentHelp("The systemd unit that runs sharemail, for its User= (and drop-ins).", valueName: "file"))
    var unit: String = Doctor.unitFile

    static let unitFile = "/etc/systemd/system/sharemail.service"

    /// The `User=` of the installed unit (its drop-ins in sharemail.service.d/ win, the
    /// last one read last, as systemd reads them), else the README's `sharemail`.
    static func daemonUser(unit path: String = unitFile) -> String {
        let dropIns = ((try? FileManager.default.contentsOfDirectory(atPath: path + ".d")) ?? [])
            .filter { $0.hasSuffix(".conf") }.sorted().map { path + ".d/" + $0 }
        var user = "sharemail"
        for file in [path] + dropIns {
            let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
            for line in text.split(separator: "\n") where line.hasPrefix("User=") {
                let name = line.dropFirst("User=".count).trimmingCharacters(in: .whitespaces)
                if !name.isEmpty { user = name }
            }
        }
        return user
    }

    func run() throws {
        let file: ConfigurationFile
        do {
            file = try ConfigurationFile.load(config).0
        } catch {
            throw CommandFailure("\(error)", .configurationError, toStandardOutput: true)
        }
        let postfix: PostfixView
        do {
            postfix = try PostfixView.read(directory: postfixDirectory)
        } catch {
            throw CommandFailure("FAIL cannot read the Postfix configuration: \(error)", .problemsFound, toStandardOutput: true)
        }
        var findings: [Finding]
        if let ours = socket.map(SocketSpec.init(libmilter:)) ?? file.daemon.socket {
            findings = DoctorChecks(configuration: file.policy, socket: ours, postfix: postfix).run()
        } else {
            findings = [
                Finding(
                    level: .fail, text: "sharemail's socket \"\(socket ?? "")\" is not a socket spec",
                    fix: "use unix:/path or inet:port@host in `socket`")
            ]
        }
        findings.append(StateCheck(state: file.daemon.state, user: user ?? Self.daemonUser(unit: unit)).run())
        for finding in findings { print(finding) }
        let failures = findings.filter { $0.level == .fail }.count
        print(failures == 0 ? "no problems found" : "\(failures) problem(s) found")
        if failures > 0 { throw CommandFailure(nil, .problemsFound) }
    }
}
