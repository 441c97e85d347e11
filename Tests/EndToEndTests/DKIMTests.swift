import Foundation
import PostfixLab
import Testing

/// The README's DKIM advice against a real signer: Debian's OpenDKIM signing for example.com,
/// next to sharemail in smtpd_milters of the lab's Postfix. Staff mail that reaches the
/// Internet (smtp-sink) is verified with dkimpy (python3-dkim), the key served from the
/// generated TXT record instead of DNS.
@Suite("DKIM: OpenDKIM after sharemail signs the rewritten From", .serialized, .e2eEnvironment())
struct DKIMTests {
    let env: E2EEnvironment

    init() throws {
        env = try E2EEnvironment.current()
        try env.beginTest()
    }

    @Test("sharemail first: the signature verifies, with d= the domain of the rewritten From")
    func signerAfterSharemail() throws {
        let signer = try OpenDKIM(in: env.directory)
        defer { signer.stop() }
        try withMilters(["unix:" + sharemailSocket, signer.postfixSpec]) {
            let message = try sendStaffMail()
            #expect(message.file.value("From") == "Zhangsan <sales@example.com>", "\(message)")
            let signature = try #require(message.file.value("DKIM-Signature"), "OpenDKIM did not sign:\n\(message)\n\(signer.log)")
            #expect(Self.tag("d", in: signature) == "example.com", "\(signature)")
            let verdict = try signer.verify(message)
            #expect(verdict.succeeded, "dkimpy: \(verdict)\n\(message)")
            #expect(verdict.output.contains("signature ok d=example.com"), "\(verdict)")

            // doctor states the order, and that non_smtpd_milters (left without the signer
            // here) lets mail from the sendmail command leave unsigned.
            let doctor = try runDoctor()
            #expect(doctor.status == 0, "\(doctor)")
            #expect(doctor.output.contains("OK   smtpd_milters: sharemail runs before \(signer.postfixSpec)"), "\(doctor)")
            #expect(
                doctor.output.contains("WARN smtpd_milters has the DKIM signer \(signer.postfixSpec) but non_smtpd_milters has none"),
                "\(doctor)")
        }
    }

    @Test("the signer first: it signs the From sharemail then rewrites, verification fails, and doctor says so")
    func signerBeforeSharemail() throws {
        let signer = try OpenDKIM(in: env.directory)
        defer { signer.stop() }
        try withMilters([signer.postfixSpec, "unix:" + sharemailSocket]) {
            let message = try sendStaffMail()
            #expect(message.file.value("From") == "Zhangsan <sales@example.com>", "\(message)")
            let signature = try #require(message.file.value("DKIM-Signature"), "OpenDKIM did not sign:\n\(message)\n\(signer.log)")
            #expect(Self.tag("d", in: signature) == "example.com", "\(signature)")
            let verdict = try signer.verify(message)
            #expect(!verdict.succeeded && verdict.output.contains("signature FAILED"), "dkimpy: \(verdict)\n\(message)")

            let doctor = try runDoctor()
            #expect(doctor.status == 1, "\(doctor)")
            #expect(doctor.output.contains("FAIL smtpd_milters: \(signer.postfixSpec) runs before sharemail"), "\(doctor)")
            #expect(
                doctor.output.contains("fix: postconf -e 'smtpd_milters = unix:\(sharemailSocket), \(signer.postfixSpec)'"),
                "\(doctor)")
        }
    }

    // MARK: Helpers

    private var sharemailSocket: String { env.sharemail?.socketPath ?? "" }

    /// `sharemail doctor` on the lab's Postfix, told the daemon's socket as DoctorTests do.
    private func runDoctor() throws -> Command.Result {
        try Command.run(
            [
                LabPaths.sharemailBinary, "doctor", "--config", try #require(env.sharemail).configPath,
                "-c", env.postfix.configDirectory, "--socket", "unix:" + sharemailSocket,
            ],
            timeout: .seconds(60))
    }

    /// Zhangsan, logged in, writes to a customer; returns what the Internet got.
    private func sendStaffMail() throws -> Sink.Message {
        let subject = "dkim " + uniqueTag()
        let outcome = try env.sendAndDeliver(
            as: .staff(login: "zhangsan"), from: "zhangsan@example.com", to: ["customer@customer.test"],
            message: message([
                "From: Zhangsan <zhangsan@example.com>", "To: customer@customer.test", "Subject: \(subject)",
                "Date: Thu, 03 Dec 2026 10:00:00 +0000", "Message-ID: <\(uniqueTag())@example.com>",
            ]))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        let messages = try env.sink.messages().filter { $0.file.value("Subject") == subject }
        return try #require(messages.first, "the Internet got nothing:\n\(env.diagnostics)")
    }

    /// Runs `body` with smtpd_milters set to `milters`, then puts the lab's value back.
    private func withMilters(_ milters: [String], _ body: () throws -> Void) throws {
        let conf = env.postfix.configDirectory
        let before = try Command.run(["postconf", "-c", conf, "-h", "smtpd_milters"]).output
            .trimmingCharacters(in: .whitespacesAndNewlines)
        try reload("smtpd_milters = " + milters.joined(separator: ", "))
        defer { try? reload("smtpd_milters = " + before) }
        env.markLogs()
        try body()
    }

    /// postconf -e, `postfix reload`, then waits until smtpd answers again.
    private func reload(_ setting: String) throws {
        let conf = env.postfix.configDirectory
        let edit = try Command.run(["postconf", "-c", conf, "-e", setting])
        try #require(edit.succeeded, "\(edit)")
        let reload = try Command.run(["postfix", "-c", conf, "reload"])
        try #require(reload.succeeded, "\(reload)")
        // Idle smtpd processes of the old configuration exit on reload.
        usleep(500_000)
        try #require(poll(timeout: .seconds(10)) { SMTPClient.canConnect(port: env.postfix.smtpPort) })
    }

    /// The value of tag `name` in a DKIM-Signature (`d=example.com; s=…`).
    static func tag(_ name: String, in signature: String) -> String? {
        for item in signature.split(separator: ";") {
            let parts = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            if parts.count == 2, parts[0] == name { return parts[1] }
        }
        return nil
    }
}

/// Debian's opendkim in the foreground on a unix socket of the run directory, signing mail
/// From example.com (selector `e2e`, a key made by opendkim-genkey) for the staff's
/// network (XCLIENT ADDR=192.0.2.10) and logins.
struct OpenDKIM {
    let directory: String
    let socketPath: String
    private let pid: pid_t

    /// As Postfix names it in smtpd_milters.
    var postfixSpec: String { "unix:" + socketPath }
    var log: String { (try? String(contentsOfFile: directory + "/opendkim.log", encoding: .utf8)) ?? "" }

    init(in runDirectory: String) throws {
        directory = runDirectory + "/opendkim-" + uniqueTag()
        socketPath = directory + "/opendkim.sock"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        chmod(directory, 0o755)  // Postfix (user postfix) reaches the socket inside
        let genkey = try Command.run(["opendkim-genkey", "-b", "2048", "-d", "example.com", "-s", "e2e", "-D", directory])
        guard genkey.succeeded else { throw LabError("opendkim-genkey: \(genkey)") }
        chmod(directory + "/e2e.private", 0o600)
        try """
        Syslog no
        LogWhy yes
        Mode s
        Domain example.com
        Selector e2e
        KeyFile \(directory)/e2e.private
        Canonicalization relaxed/simple
        InternalHosts 127.0.0.1, 192.0.2.0/24
        Socket local:\(socketPath)
        UMask 000
        # The key lies under /tmp, which anybody may write: opendkim would refuse it.
        RequireSafeKeys no
        PidFile \(directory)/opendkim.pid

        """.write(toFile: directory + "/opendkim.conf", atomically: true, encoding: .utf8)
        pid = try Command.spawn(["opendkim", "-f", "-x", directory + "/opendkim.conf"], outputPath: directory + "/opendkim.log")
        RunDirectory.recordChild(pid, in: runDirectory)
        let socketPath = socketPath
        guard poll(timeout: .seconds(20), { FileManager.default.fileExists(atPath: socketPath) }) else {
            Command.terminate(pid)
            throw LabError("opendkim made no socket \(socketPath):\n\(log)")
        }
    }

    func stop() { Command.terminate(pid) }

    /// dkimpy's verdict on `message` as smtp-sink dumped it, the public key taken from the TXT
    /// record opendkim-genkey wrote (no DNS): exit 0 and "signature ok d=…", or exit 1.
    func verify(_ message: Sink.Message) throws -> Command.Result {
        let script = """
            import re, sys, dkim
            message = open(sys.argv[1], "rb").read().replace(b"\\r\\n", b"\\n").replace(b"\\n", b"\\r\\n")
            record = b"".join(re.findall(rb'"([^"]*)"', open(sys.argv[2], "rb").read()))
            def dns(name, timeout=5):
                return record if name.rstrip(b".") == b"e2e._domainkey.example.com" else None
            verifier = dkim.DKIM(message)
            ok = verifier.verify(dnsfunc=dns)
            print(("signature ok d=" if ok else "signature FAILED d=") + (verifier.domain or b"?").decode())
            sys.exit(0 if ok else 1)
            """
        return try Command.run(["/usr/bin/python3", "-c", script, message.file.path, directory + "/e2e.txt"], timeout: .seconds(30))
    }
}
