import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A private Postfix instance on 127.0.0.1:`smtpPort`, run with `postfix -c DIR/conf`.
///
/// It never touches /etc/postfix: every path Postfix writes to (queue, data, maillog, Maildirs)
/// lives in the run directory. Mail for example.com goes to Maildirs through the
/// `virtual` agent; everything else goes to the sink on `sinkPort`, which plays the Internet.
package final class PostfixInstance: Sendable {
    package let directory: String  // the run directory
    package let smtpPort: UInt16  // where clients connect
    package let milterSocket: String?  // nil: a plain Postfix, used by the harness self-tests

    package var configDirectory: String { directory + "/conf" }
    package var queueDirectory: String { directory + "/queue" }
    package var maillogPath: String { directory + "/maillog" }
    package var mailBase: String { directory + "/mail" }

    /// The local mailboxes; `sales@` is not one of them: it is accepted through virtual_alias_maps.
    package static let mailboxes = ["manager", "zhangsan", "lisi", "wangwu"]

    package init(directory: String, smtpPort: UInt16, sinkPort: UInt16, milterSocket: String?) throws {
        self.directory = directory
        self.smtpPort = smtpPort
        self.milterSocket = milterSocket
        let files = FileManager.default
        for sub in ["conf", "conf/sasl", "queue", "data", "mail"] {
            try files.createDirectory(atPath: directory + "/" + sub, withIntermediateDirectories: true)
        }
        // Postfix checks these owners: data_directory belongs to mail_owner, Maildirs to the
        // uid in virtual_uid_maps (65534, "nobody").
        chown(directory + "/data", Self.uid(of: "postfix"), gid_t(bitPattern: -1))
        chown(mailBase, 65534, 65534)

        try mainCf(sinkPort: sinkPort).write(toFile: configDirectory + "/main.cf", atomically: true, encoding: .utf8)
        try masterCf().write(toFile: configDirectory + "/master.cf", atomically: true, encoding: .utf8)
        try Self.mailboxes.map { "\($0)@example.com example.com/\($0)/" }.joined(separator: "\n")
            .appending("\n").write(toFile: configDirectory + "/vmailbox", atomically: true, encoding: .utf8)
        try "bounce.test error:5.1.1 mailbox unavailable\n"
            .write(toFile: configDirectory + "/transport", atomically: true, encoding: .utf8)
        // The admin's safety net: sharemail itself replaces sales@ by manager@.
        try "sales@example.com manager@example.com\n"
            .write(toFile: configDirectory + "/virtual", atomically: true, encoding: .utf8)
        // smtpd refuses to start with SASL enabled but no mechanisms; Cyrus with an empty
        // sasldb lists PLAIN/LOGIN and nobody ever authenticates (XCLIENT LOGIN= is used instead).
        try "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nsasldb_path: \(directory)/sasldb2\nmech_list: PLAIN LOGIN\n"
            .write(toFile: configDirectory + "/sasl/smtpd.conf", atomically: true, encoding: .utf8)
    }

    private func mainCf(sinkPort: UInt16) -> String {
        var lines = [
            "compatibility_level = 3.6",
            "queue_directory = \(queueDirectory)",
            "data_directory = \(directory)/data",
            "maillog_file = \(maillogPath)",
            "maillog_file_prefixes = \(directory)",
            "myhostname = mx.example.com",
            "mydomain = example.com",
            "myorigin = example.com",
            "mydestination =",
            // As Debian's main.cf; swap_bangpath, allow_percent_hack,
            // append_at_myorigin and append_dot_mydomain keep Postfix's
            // defaults, so the tests meet every address form Postfix rewrites.
            "recipient_delimiter = +",
            "smtputf8_enable = yes",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            // Not 127.0.0.0/8: the test clients must not be trusted relays. XCLIENT ADDR= replaces
            // the client address anyway, and relay rules apply to that one.
            "mynetworks = 127.0.0.1/32",
            "alias_maps =",
            "alias_database =",
            "biff = no",
            "smtp_dns_support_level = disabled",
            "relayhost = [127.0.0.1]:\(sinkPort)",
            // A recipient domain that bounces after queueing (the sink accepts everything);
            // without the second line smtpd would already refuse it at RCPT.
            "transport_maps = texthash:\(configDirectory)/transport",
            "smtpd_reject_unlisted_recipient = no",
            "virtual_mailbox_domains = example.com",
            "virtual_mailbox_maps = texthash:\(configDirectory)/vmailbox",
            "virtual_alias_maps = texthash:\(configDirectory)/virtual",
            "virtual_mailbox_base = \(mailBase)",
            "virtual_uid_maps = static:65534",
            "virtual_gid_maps = static:65534",
            "smtpd_authorized_xclient_hosts = 127.0.0.1",
            "smtpd_sasl_auth_enable = yes",
            "smtpd_sasl_type = cyrus",
            "smtpd_sasl_path = smtpd",
            "cyrus_sasl_config_path = \(configDirectory)/sasl",
            "smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination",
            // Speed: no penalty sleeps after rejected commands, no flow-control delays.
            "smtpd_error_sleep_time = 0",
            "in_flow_delay = 0",
            "delay_warning_time = 0",
        ]
        if let milterSocket {
            lines += [
                "smtpd_milters = unix:\(milterSocket)",
                "non_smtpd_milters = unix:\(milterSocket)",
                "milter_default_action = tempfail",
                "milter_protocol = 6",
                // Short, so the "milter down" case answers quickly.
                "milter_connect_timeout = 10s",
                "milter_command_timeout = 10s",
                "milter_content_timeout = 20s",
            ]
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Only the services a loopback test needs; chroot off (column 5 `n`) since the queue
    /// directory has no chroot environment.
    private func masterCf() -> String {
        """
        127.0.0.1:\(smtpPort) inet n - n - - smtpd
        pickup    unix  n - n 60    1 pickup
        cleanup   unix  n - n -     0 cleanup
        qmgr      unix  n - n 300   1 qmgr
        rewrite   unix  - - n -     - trivial-rewrite
        bounce    unix  - - n -     0 bounce
        defer     unix  - - n -     0 bounce
        trace     unix  - - n -     0 bounce
        verify    unix  - - n -     1 verify
        flush     unix  n - n 1000? 0 flush
        proxymap  unix  - - n -     - proxymap
        smtp      unix  - - n -     - smtp
        relay     unix  - - n -     - smtp
        showq     unix  n - n -     - showq
        error     unix  - - n -     - error
        retry     unix  - - n -     - error
        discard   unix  - - n -     - discard
        local     unix  - n n -     - local
        virtual   unix  - n n -     - virtual
        anvil     unix  - - n -     1 anvil
        scache    unix  - - n -     1 scache
        postlog   unix-dgram n - n - 1 postlogd

        """
    }

    package func start() throws {
        guard !SMTPClient.canConnect(port: smtpPort) else {
            throw LabError("127.0.0.1:\(smtpPort) is already in use: clients would talk to someone else")
        }
        let result = try Command.run(["postfix", "-c", configDirectory, "start"])
        guard result.succeeded else { throw LabError("Postfix did not start: \(result)\n\(maillogTail())") }
        // `postfix start` returns before smtpd listens; wait for the greeting port.
        guard poll(timeout: .seconds(30), { SMTPClient.canConnect(port: smtpPort) }) else {
            throw LabError("Postfix does not listen on 127.0.0.1:\(smtpPort)\n\(maillogTail())")
        }
    }

    /// `postfix stop` only signals the master; wait until it is gone before the directory is.
    package func stop() {
        let masterPid = (try? String(contentsOfFile: queueDirectory + "/pid/master.pid", encoding: .utf8))
            .flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        _ = try? Command.run(["postfix", "-c", configDirectory, "stop"], timeout: .seconds(30))
        if let masterPid {
            _ = poll(timeout: .seconds(15)) { kill(masterPid, 0) != 0 && errno == ESRCH }
        }
    }

    // MARK: Queue

    /// Queue files waiting anywhere (maildrop = local submissions not yet picked up).
    package func queuedFiles() -> [String] {
        ["maildrop", "incoming", "active", "deferred", "hold"].flatMap { queue in
            let root = queueDirectory + "/" + queue
            let all = FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? []
            return all.filter { !isDirectory(root + "/" + $0) }.map { queue + "/" + $0 }
        }
    }

    /// Waits until every message has been delivered, bounced or rejected. Empty twice in a row,
    /// because a bounce is queued while its original is still being removed.
    package func waitForEmptyQueue(timeout: Duration = .seconds(30)) throws {
        var emptyPolls = 0
        let drained = poll(timeout: timeout) {
            emptyPolls = queuedFiles().isEmpty ? emptyPolls + 1 : 0
            return emptyPolls >= 2
        }
        guard drained else {
            throw LabError("the Postfix queue did not drain within \(timeout):\n\(queueListing())")
        }
    }

    package func queueListing() -> String {
        (try? Command.run(["postqueue", "-c", configDirectory, "-p"]))?.output ?? "(postqueue failed)"
    }

    /// Throws away whatever a failed test left queued, so it cannot leak into the next test.
    package func deleteAllQueued() {
        _ = try? Command.run(["postsuper", "-c", configDirectory, "-d", "ALL"])
        for file in queuedFiles() where file.hasPrefix("maildrop/") {
            unlink(queueDirectory + "/" + file)
        }
    }

    /// Mail "submitted on the host": Postfix's sendmail, as root, against this instance.
    package func sendmail(from sender: String, to recipients: [String], message: [UInt8]) throws -> Command.Result {
        try Command.run(["sendmail", "-C", configDirectory, "-f", sender, "--"] + recipients, stdin: message)
    }

    // MARK: Log

    /// Current size of the maillog; pass it to `maillog(since:)` to see one test's lines.
    package func maillogOffset() -> UInt64 {
        (try? FileManager.default.attributesOfItem(atPath: maillogPath)[.size] as? UInt64) ?? 0
    }

    package func maillog(since offset: UInt64) -> String {
        guard let handle = FileHandle(forReadingAtPath: maillogPath) else { return "(no maillog)" }
        defer { try? handle.close() }
        handle.seek(toFileOffset: offset)
        return String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
    }

    package func maillogTail(lines count: Int = 40) -> String {
        maillog(since: 0).split(separator: "\n").suffix(count).joined(separator: "\n")
    }

    // MARK: Helpers

    private static func uid(of user: String) -> uid_t {
        guard let entry = getpwnam(user) else { return 0 }
        return entry.pointee.pw_uid
    }

    private func isDirectory(_ path: String) -> Bool {
        var flag: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &flag) && flag.boolValue
    }
}
