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
    private let directory: String
    private let pid = Mutex<pid_t?>(nil)  // nil while stopped

    package init(directory: String, config: String, binary: String = LabPaths.sharemailBinary) throws {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw LabError("sharemail binary not found at \(binary) (build it with `swift build`, or set SHAREMAIL_BIN)")
        }
        self.binary = binary
        self.directory = directory
        configPath = directory + "/sharemail.toml"
        socketPath = directory + "/milter.sock"
        logPath = directory + "/sharemail.log"
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// Starts the milter and waits until its socket accepts connections.
    package func start() throws {
        unlink(socketPath)  // a stale socket from a killed daemon would look "ready"
        let started = try Command.spawn(
            [binary, "serve", "--config", configPath, "--socket", "unix:" + socketPath, "--log", "stderr"], outputPath: logPath)
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
                throw LabError("""
                    user postfix cannot connect to \(socketPath) (\(Self.describe(socketPath))): \
                    socket_group/socket_mode not applied?\n\(logTail())
                    """)
            }
            throw LabError("sharemail did not open \(socketPath) within 30 s:\n\(logTail())")
        }
    }

    /// SIGTERM, then SIGKILL after 5 s.
    package func stop() {
        guard let running = pid.withLock({ value -> pid_t? in defer { value = nil }; return value }) else { return }
        Command.terminate(running)
    }

    /// SIGKILL without warning: the "milter crashed" case. Leaves the socket file behind.
    package func kill() {
        guard let running = pid.withLock({ value -> pid_t? in defer { value = nil }; return value }) else { return }
        Glibc.kill(running, SIGKILL)
        _ = try? Command.wait(running, timeout: .seconds(5))
    }

    package var isRunning: Bool { pid.withLock { $0 != nil } }

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
