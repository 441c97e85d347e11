import Foundation
import PostfixLab

/// Debian's s-nail and mutt, driven without a person: each writes a message the way it
/// writes them for its users, and Postfix carries it. A private HOME holds their settings.
///
/// s-nail submits through the lab Postfix's own `sendmail` (MAIL_CONFIG names the lab's
/// configuration). mutt either does the same (bounce) or hands its message to a capture
/// script, which the test then sends over SMTP as the Internet would (a customer's reply).
/// mutt needs a terminal for its menus: `script` gives it one.
struct MailClients {
    let home: String
    let postfixConfig: String
    private var capturePath: String { home + "/captured.eml" }
    private var captureScript: String { home + "/capture-sendmail" }

    init(lab: Lab) throws {
        home = lab.directory + "/mua-" + uniqueTag()
        postfixConfig = lab.postfix.configDirectory
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        try "#!/bin/sh\ncat > '\(capturePath)'\n".write(toFile: captureScript, atomically: true, encoding: .utf8)
        chmod(captureScript, 0o755)
    }

    /// `s-nail` as `from` (a staff member) writes to `to`; submitted with Postfix's sendmail.
    func snailSend(from: String, fromName: String, to: String, subject: String, body: String) throws {
        let result = try Command.run(
            [
                "/usr/bin/env", "HOME=\(home)", "MAIL_CONFIG=\(postfixConfig)", "LC_ALL=C.UTF-8",
                "s-nail", "-n", "-S", "mta=/usr/sbin/sendmail", "-S", "ttycharset=utf-8", "-S", "sendcharsets=utf-8",
                "-r", "\(fromName) <\(from)>", "-s", subject, "-.", to,
            ],
            stdin: Array(body.utf8))
        guard result.succeeded else { throw LabError("s-nail failed: \(result)") }
    }

    /// mutt answers the first message of `mbox` (Reply, with the original quoted) and the
    /// reply is captured, not sent: returns it as mutt wrote it.
    func muttReply(to mbox: String, from: String, sendCharset: String) throws -> [UInt8] {
        try runMutt(
            settings: [
                "set from=\"\(from)\"", "set sendmail=\"\(captureScript)\"", "set send_charset=\"\(sendCharset)\"",
                "set fast_reply=yes", "set include=yes", "set editor=/bin/true", "set abort_unmodified=no",
            ], folder: mbox, keys: "<reply><send-message><quit>")
        return try captured()
    }

    /// mutt sends a prepared draft (`mutt -H`): the headers as a client like Outlook filled
    /// them in, encoded and written out by mutt. Captured, not sent.
    func muttSendDraft(_ draft: String, sendCharset: String = "utf-8") throws -> [UInt8] {
        let draftPath = home + "/draft-" + uniqueTag()
        try draft.write(toFile: draftPath, atomically: true, encoding: .utf8)
        let rc = try writeMuttrc(["set sendmail=\"\(captureScript)\"", "set send_charset=\"\(sendCharset)\""])
        let result = try Command.run(
            ["/usr/bin/env", "HOME=\(home)", "LC_ALL=C.UTF-8", "mutt", "-n", "-F", rc, "-H", draftPath], stdin: [])
        guard result.succeeded else { throw LabError("mutt -H failed: \(result)") }
        return try captured()
    }

    /// The manager bounces (redirects) the first message of `mbox` to `to` with mutt, through
    /// Postfix's sendmail: mutt writes Resent-From, Resent-To, Resent-Message-ID.
    func muttBounce(_ mbox: String, from: String, to: String) throws {
        try runMutt(
            settings: [
                "set from=\"\(from)\"", "set use_envelope_from=yes", "set bounce=yes",
                "set sendmail=\"/usr/sbin/sendmail -oem -oi\"",
            ], folder: mbox, keys: "<bounce-message>\(to)<enter><quit>")
    }

    /// An mbox holding `message` (as a client stores it), for mutt to open.
    func mbox(with message: [UInt8]) throws -> String {
        let path = home + "/in-" + uniqueTag() + ".mbox"
        var bytes = Array("From sharemail-test Thu Dec  3 06:00:00 2026\n".utf8)
        let text = String(decoding: message, as: UTF8.self).replacingOccurrences(of: "\r\n", with: "\n")
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            // mboxrd quoting, so a body line cannot start a new message.
            if line.drop(while: { $0 == ">" }).hasPrefix("From ") { bytes.append(UInt8(ascii: ">")) }
            bytes += Array(line.utf8) + [0x0A]
        }
        bytes.append(0x0A)
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else { throw LabError("cannot write \(path)") }
        return path
    }

    private func runMutt(settings: [String], folder: String, keys: String) throws {
        let rc = try writeMuttrc(settings)
        let command = "mutt -n -F '\(rc)' -f '\(folder)' -e 'push \(keys)'"
        let result = try Command.run(
            [
                "/usr/bin/env", "HOME=\(home)", "MAIL_CONFIG=\(postfixConfig)", "TERM=vt100", "LC_ALL=C.UTF-8",
                "script", "-qec", command, "/dev/null",
            ],
            timeout: .seconds(30))
        guard result.succeeded else { throw LabError("mutt failed: \(result)") }
    }

    private func writeMuttrc(_ settings: [String]) throws -> String {
        let path = home + "/muttrc-" + uniqueTag()
        let common = [
            "set mbox_type=mbox", "set folder=\"\(home)\"", "set move=no", "set quit=yes", "set record=\"\"",
            "set postpone=no", "set charset=\"utf-8\"", "set edit_headers=no",
        ]
        try (common + settings).joined(separator: "\n").appending("\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    private func captured() throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: capturePath) else {
            throw LabError("the mail client wrote nothing to \(capturePath)")
        }
        unlink(capturePath)
        return Array(data)
    }
}
