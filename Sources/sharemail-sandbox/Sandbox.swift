import Foundation
import PostfixLab

#if canImport(Glibc)
    import Glibc
#endif

/// Starts the lab, plays the cases, reports, and always stops the lab again.
struct Sandbox {
    enum ExitStatus {
        static let success: Int32 = 0
        static let notAsExpected: Int32 = 1  // a case did not land where the seed says
        static let couldNotRun: Int32 = 2  // not root, Postfix missing, sharemail refused to start…
        static let interrupted: Int32 = 130
    }

    /// Short: the milter socket path inside must fit in sockaddr_un.
    static let root = "/tmp/sharemail-sandbox"
    static let exampleConfig = "postfix-conf/sharemail.example.toml"

    static let usage = """
        usage: sharemail-sandbox [--keep]

        Starts a throwaway Postfix on 127.0.0.1 with sharemail and \(exampleConfig),
        plays the cases of the seed document (a customer writes to sales@, a customer writes
        straight to a staff address, a staff member replies, the customer replies to the
        staff member's name, the customer answers the bare sales@ from a phone) and prints
        where each message landed: which Maildir, or the Internet (an smtp-sink that records
        what Postfix relays out).

        The conversation memory stays at its default, /var/lib/sharemail/state.sqlite, which
        sharemail sees in a mount namespace of its own as the run directory's
        var-lib-sharemail/: the host's /var/lib is never touched.

        Everything lives in a new directory under \(root)/ and is stopped at the end.
        Must run as root (Postfix). Set SHAREMAIL_BIN to try another sharemail binary.

          --keep   leave the directory (maillog, sharemail.log, Maildirs, what reached the
                   Internet) for inspection; the next run removes it

        Exit status: 0 every case landed as expected, 1 some case did not, 2 the sandbox could
        not run, 130 interrupted.
        """

    let keep: Bool

    func run() -> Int32 {
        let config: String
        do {
            config = try Self.sandboxConfig()
        } catch {
            sayError("sharemail-sandbox: \(error)")
            return ExitStatus.couldNotRun
        }
        let signals = StopOnSignal.install(keep: keep)
        defer { signals.forEach { $0.cancel() } }

        say("Starting a throwaway Postfix, smtp-sink and sharemail under \(Self.root)/ …")
        let lab: Lab
        do {
            // The example leaves `state` at its default, /var/lib/sharemail/state.sqlite: the
            // daemon sees the run directory's var-lib-sharemail there, never the host's.
            lab = try Lab.start(sharemailConfig: config, under: Self.root, sharemailPrivateState: true)
        } catch {
            StopOnSignal.startFailed()
            sayError("sharemail-sandbox: could not start the sandbox: \(error)")
            return ExitStatus.couldNotRun
        }
        guard StopOnSignal.started(lab, keep: keep) else { return ExitStatus.interrupted }
        describe(lab)

        let cases = Cases(lab: lab)
        var failed: [String] = []
        for (title, play) in cases.all {
            StopOnSignal.waitIfInterrupted()
            say("")
            say(title)
            let problems: [String]
            do {
                problems = try play()
            } catch {
                problems = ["could not be played: \(error)"]
            }
            StopOnSignal.waitIfInterrupted()
            if problems.isEmpty {
                continue
            }
            failed.append(title)
            say("  NOT AS EXPECTED:")
            for problem in problems { say(indent(problem, by: "    - ")) }
            say(indent(cases.logs(), by: "    "))
        }

        StopOnSignal.waitIfInterrupted()
        say("")
        if failed.isEmpty {
            say("All \(cases.all.count) cases landed as expected.")
        } else {
            say("\(failed.count) of \(cases.all.count) cases did not land as expected:")
            for title in failed { say("  " + title) }
        }
        StopOnSignal.stop(keep: keep)
        if keep {
            say(
                """
                Stopped Postfix, smtp-sink and sharemail. Kept \(lab.directory)/:
                  maillog, sharemail.log, smtp-sink.log   the logs
                  mail/example.com/<mailbox>/new/         the Maildirs
                  sink/                                   what reached the Internet, envelope first
                  conf/, sharemail.toml                   the configuration used
                  var-lib-sharemail/state.sqlite          the conversation memory
                The next run removes it.
                """)
        } else {
            say("Stopped Postfix, smtp-sink and sharemail, removed \(lab.directory) (--keep leaves it).")
        }
        return failed.isEmpty ? ExitStatus.success : ExitStatus.notAsExpected
    }

    /// The example configuration as it is, but with the sandbox's socket (sharemail gets it
    /// with --socket anyway) and the socket group and mode Postfix needs, if the file lacks them.
    static func sandboxConfig() throws -> String {
        let path = LabPaths.packageRoot + "/" + exampleConfig
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw LabError("cannot read \(path)")
        }
        let topLevel = text.components(separatedBy: "[[").first ?? text
        var lines: [String] = []
        var replaced = false
        for line in text.components(separatedBy: "\n") {
            guard !replaced,
                line.trimmingCharacters(in: .whitespaces).hasPrefix("socket ")
                    || line.trimmingCharacters(in: .whitespaces).hasPrefix("socket=")
            else {
                lines.append(line)
                continue
            }
            replaced = true
            lines.append(#"socket = "unix:/unused/milter.sock"   # sharemail-sandbox: overridden by --socket"#)
            if !topLevel.contains("socket_group") { lines.append(#"socket_group = "postfix""#) }
            if !topLevel.contains("socket_mode") { lines.append(#"socket_mode = "0660""#) }
        }
        guard replaced else { throw LabError("\(path) has no `socket = …` line") }
        return lines.joined(separator: "\n")
    }

    private func describe(_ lab: Lab) {
        let version =
            (try? Command.run(["postconf", "-d", "-h", "mail_version"]))
            .map { $0.output.trimmingCharacters(in: .whitespacesAndNewlines) } ?? "?"
        let sharemail = lab.sharemail!
        say(
            """

              \(pad("Postfix " + version, 17))private instance on 127.0.0.1:\(lab.postfix.smtpPort) (postfix -c \(lab.postfix.configDirectory))
              sharemail        \(sharemail.binary), socket \(sharemail.socketPath)
              configuration    \(Self.exampleConfig), as it is but for the socket
              memory           \(sharemail.statePrivatelyMounted
                                   ? "the default /var/lib/sharemail/state.sqlite: in sharemail's own mount\n"
                                     + "                   namespace that is \(sharemail.stateDirectory ?? "?")/"
                                   : "\(sharemail.stateDirectory ?? "?")/state.sqlite (this machine allows no mount\n"
                                     + "                   namespace in which to show it the default /var/lib/sharemail)")
              example.com      delivered by Postfix's virtual agent to Maildirs in \(lab.postfix.mailBase)/example.com/
              the Internet     everything else: relayed to smtp-sink on 127.0.0.1:\(lab.sink.port)

              Customers connect from 198.51.100.7 without logging in. Staff connect from 192.0.2.10
              and log in (SASL). Both are played with Postfix's XCLIENT command.
            """)
    }
}

// MARK: Output

/// Unbuffered lines on stdout: output stays in order with the daemons' and survives exit().
func say(_ text: String) { writeAll(1, text + "\n") }

func sayError(_ text: String) { writeAll(2, text + "\n") }

private func writeAll(_ fd: Int32, _ text: String) {
    let bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if written <= 0 { return }
        offset += written
    }
}

func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}

func indent(_ text: String, by prefix: String) -> String {
    let padding = String(repeating: " ", count: prefix.count)
    return text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
        .map { ($0.offset == 0 ? prefix : padding) + $0.element }.joined(separator: "\n")
}
