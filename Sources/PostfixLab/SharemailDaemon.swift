import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The sharemail milter: `sharemail serve --config FILE --socket unix:PATH`.
///
/// Its stdout and stderr go to DIR/sharemail.log, which failure messages quote.
package final class SharemailDaemon: Sendable {
    package let binary: String
    package let configPath: String
    package let socketPath: String
    package let logPath: String
    /// The user the daemon runs as (nil: the harness's own, root), as the unit's `User=`.
    package let user: String?
    private let openFiles: Int?  // RLIMIT_NOFILE of the daemon; nil: inherited
    /// Where the daemon's memory is when `privateState` was asked for; nil otherwise.
    package let stateDirectory: String?
    /// True when the daemon sees `stateDirectory` as /var/lib/sharemail (a mount namespace);
    /// false when this machine allows none and the configuration names the directory instead.
    package let statePrivatelyMounted: Bool
    private let directory: String
    private let pid = Mutex<pid_t?>(nil)  // nil while stopped

    /// `user`: run as this user and its group (setpriv), as systemd's `User=` does; the socket
    /// then lives in a subdirectory that user owns. `openFiles`: the daemon's descriptor limit
    /// (prlimit), small to make running out of descriptors quick to provoke. `privateState`:
    /// the daemon runs in a mount namespace of its own where /var/lib is an empty tmpfs and
    /// /var/lib/sharemail is DIR/var-lib-sharemail, so its default memory is used without
    /// the host's /var/lib ever being read or written (systemd's TemporaryFileSystem= and
    /// BindPaths= do the same). Where no mount namespace may be made (an unprivileged
    /// container), a `state` line naming DIR/var-lib-sharemail/state.sqlite is put in front.
    package init(
        directory: String, config: String, binary: String = LabPaths.sharemailBinary,
        user: String? = nil, openFiles: Int? = nil, privateState: Bool = false
    ) throws {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw LabError("sharemail binary not found at \(binary) (build it with `swift build`, or set SHAREMAIL_BIN)")
        }
        self.binary = binary
        self.directory = directory
        self.user = user
        self.openFiles = openFiles
        var config = config
        if privateState {
            let state = directory + "/var-lib-sharemail"
            try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: false)
            chmod(state, 0o750)
            stateDirectory = state
            statePrivatelyMounted =
                (try? Command.run(
                    ["unshare", "--mount", "--propagation", "private", "--", "true"],
                    timeout: .seconds(10)))?.succeeded ?? false
            if !statePrivatelyMounted {
                config = "state = \"\(state)/state.sqlite\"   # no mount namespace here for the default path\n" + config
            }
        } else {
            stateDirectory = nil
            statePrivatelyMounted = false
        }
        configPath = directory + "/sharemail.toml"
        logPath = directory + "/sharemail.log"
        if let user {
            guard let entry = getpwnam(user) else { throw LabError("no user \(user) to run sharemail as") }
            let socketDirectory = directory + "/milter"
            try FileManager.default.createDirectory(atPath: socketDirectory, withIntermediateDirectories: false)
            guard chown(socketDirectory, entry.pointee.pw_uid, entry.pointee.pw_gid) == 0 else {
                throw LabError("cannot give \(socketDirectory) to \(user): \(String(cString: strerror(errno)))")
            }
            socketPath = socketDirectory + "/milter.sock"
        } else {
            socketPath = directory + "/milter.sock"
        }
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// Starts the milter and waits until its socket accepts connections.
    package func start() throws {
        unlink(socketPath)  // a stale socket from a killed daemon would look "ready"
        var wrappers: [String] = []
        if let openFiles { wrappers += ["prlimit", "--nofile=\(openFiles):\(openFiles)", "--"] }
        if let stateDirectory, statePrivatelyMounted {
            wrappers += [
                "unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                #"mount -t tmpfs -o mode=0755 sharemail-lab /var/lib && mkdir /var/lib/sharemail && mount --bind "$0" /var/lib/sharemail && exec "$@""#,
                stateDirectory,
            ]
        }
        if let user, let entry = getpwnam(user) {  // the user's own group, as systemd's User= without Group=
            wrappers += ["setpriv", "--reuid=\(entry.pointee.pw_uid)", "--regid=\(entry.pointee.pw_gid)", "--init-groups", "--"]
        }
        let started = try Command.spawn(
            wrappers + [binary, "serve", "--config", configPath, "--socket", "unix:" + socketPath, "--log", "stderr"],
            outputPath: logPath)
        RunDirectory.recordChild(started, in: directory)
        pid.withLock { $0 = started }

        var exitStatus: Int32?
        let ready = poll(timeout: .seconds(30)) {
            if let status = try? Command.wait(started, timeout: .zero) {
                exitStatus = status
                return true
            }
            return Self.canConnect(unixSocket: socketPath) && Self.postfixMayConnect(socketPath)
        }
        if let exitStatus {
            pid.withLock { $0 = nil }
            throw LabError("sharemail exited with status \(exitStatus) right after start:\n\(logTail())")
        }
        guard ready else {
            stop()
            if Self.canConnect(unixSocket: socketPath) {
                throw LabError(
                    """
                    user postfix cannot connect to \(socketPath) (\(Self.describe(socketPath))): \
                    socket_group/socket_mode not applied?\n\(logTail())
                    """)
            }
            throw LabError("sharemail did not open \(socketPath) within 30 s:\n\(logTail())")
        }
    }

    /// SIGTERM, then SIGKILL after 5 s.
    package func stop() {
        guard
            let running = pid.withLock({ value -> pid_t? in
                defer { value = nil }
                return value
            })
        else { return }
        Command.terminate(running)
    }

    /// SIGKILL without warning: the "milter crashed" case. Leaves the socket file behind.
    package func kill() {
        guard
            let running = pid.withLock({ value -> pid_t? in
                defer { value = nil }
                return value
            })
        else { return }
        Glibc.kill(running, SIGKILL)
        _ = try? Command.wait(running, timeout: .seconds(5))
    }

    package var isRunning: Bool { pid.withLock { $0 != nil } }

    /// The running daemon's process id; nil while stopped.
    package var processID: pid_t? { pid.withLock { $0 } }

    // MARK: Faults and operations (the fault tests)

    /// Sends `signal` to the running daemon (SIGUSR1: reload; SIGTERM: drain and stop). The
    /// daemon stays "running" for the harness until `waitForExit` has seen it go.
    package func send(signal: Int32) throws {
        guard let running = processID else { throw LabError("sharemail is not running: cannot send signal \(signal)") }
        guard Glibc.kill(running, signal) == 0 else {
            throw LabError("kill(\(running), \(signal)) failed: \(String(cString: strerror(errno)))")
        }
    }

    /// `kill -USR1`: what systemd's ExecReload does.
    package func reload() throws { try send(signal: SIGUSR1) }

    /// Waits for the daemon to exit (after SIGTERM, say) and reaps it; returns its exit status
    /// (128+signal when killed), or nil if it still runs after `timeout`.
    package func waitForExit(timeout: Duration) throws -> Int32? {
        guard let running = processID else { return nil }
        guard let status = try Command.wait(running, timeout: timeout) else { return nil }
        pid.withLock { if $0 == running { $0 = nil } }
        return status
    }

    /// Replaces the configuration file as an admin's editor or config management does: a new
    /// file renamed over the old one, so the daemon reads either the old or the new text whole.
    /// Takes effect at the next `reload()` or start.
    package func rewriteConfig(_ text: String) throws {
        let scratch = configPath + ".new"
        try text.write(toFile: scratch, atomically: false, encoding: .utf8)
        guard rename(scratch, configPath) == 0 else {
            throw LabError("cannot rename \(scratch) to \(configPath): \(String(cString: strerror(errno)))")
        }
    }

    /// SIGKILL, a pause, then a fresh start (which waits for the socket): the "milter
    /// crashed and systemd restarted it" case.
    package func crashAndRestart(after pause: Duration = .seconds(1)) throws {
        kill()
        let (seconds, attoseconds) = pause.components
        usleep(useconds_t(seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
        try start()
    }

    /// True while something accepts connections on the milter socket (false once a stopping
    /// libmilter has closed its listener).
    package var acceptsConnections: Bool { Self.canConnect(unixSocket: socketPath) }

    package func logOffset() -> UInt64 {
        (try? FileManager.default.attributesOfItem(atPath: logPath)[.size] as? UInt64) ?? 0
    }

    package func log(since offset: UInt64) -> String {
        guard let handle = FileHandle(forReadingAtPath: logPath) else { return "(no sharemail log)" }
        defer { try? handle.close() }
        handle.seek(toFileOffset: offset)
        return String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
    }

    package func logTail(lines count: Int = 40) -> String {
        log(since: 0).split(separator: "\n").suffix(count).joined(separator: "\n")
    }

    /// Postfix's smtpd and cleanup run as user postfix: connecting needs write permission.
    /// Checked here (the harness runs as root, which may always connect) so that a socket with
    /// the wrong mode fails the start with a clear message instead of every test with a 451.
    private static func postfixMayConnect(_ path: String) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0, let user = getpwnam("postfix") else { return false }
        let (uid, gid) = (user.pointee.pw_uid, user.pointee.pw_gid)
        return info.st_mode & 0o002 != 0 || (info.st_gid == gid && info.st_mode & 0o020 != 0)
            || (info.st_uid == uid && info.st_mode & 0o200 != 0)
    }

    private static func describe(_ path: String) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else { return "missing" }
        return "mode \(String(info.st_mode & 0o777, radix: 8)), uid \(info.st_uid), gid \(info.st_gid)"
    }

    private static func canConnect(unixSocket path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
            }
        }
    }
}
