import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Where things live: the package, the sharemail binary, the example configuration.
package enum LabPaths {
    /// The package root, found from this file's path (Sources/PostfixLab/…).
    package static let packageRoot: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// `SHAREMAIL_BIN` wins; then a `sharemail` next to the running executable (SwiftPM puts
    /// the sandbox, the test bundle and the daemon in one products directory, whatever the
    /// scratch path); then the package's `.build/debug/sharemail`.
    package static var sharemailBinary: String {
        if let override = ProcessInfo.processInfo.environment["SHAREMAIL_BIN"], !override.isEmpty {
            return override
        }
        if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            let sibling = URL(fileURLWithPath: executable).deletingLastPathComponent().path + "/sharemail"
            if FileManager.default.isExecutableFile(atPath: sibling) { return sibling }
        }
        return packageRoot + "/.build/debug/sharemail"
    }
}

/// A fresh scratch directory under a root such as /tmp/sharemail-e2e, plus cleanup of what
/// crashed runs left behind. Keep roots short: the milter socket path inside must fit in
/// sockaddr_un (108 bytes).
///
/// Each directory records the pid of the process that owns it (`owner.pid`) and the pids
/// of the daemons it started (`children.pids`). A directory whose owner is gone is stale: its
/// Postfix is stopped, its daemons are killed and it is removed.
package enum RunDirectory {
    package static func create(under root: String) throws -> String {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        removeStaleRuns(under: root)
        let name = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let path = root + "/" + name
        // Built under a dot-name and renamed, so no other run ever sees it without owner.pid
        // (and mistakes it for the leftover of a crashed run).
        let building = root + "/." + name
        try FileManager.default.createDirectory(atPath: building, withIntermediateDirectories: false)
        // Postfix daemons (user postfix) must reach the milter socket inside it.
        chmod(building, 0o755)
        try "\(getpid())\n".write(toFile: building + "/owner.pid", atomically: true, encoding: .utf8)
        guard rename(building, path) == 0 else {
            throw LabError("cannot rename \(building) to \(path): \(String(cString: strerror(errno)))")
        }
        return path
    }

    /// Remembers a daemon's pid so a later run can kill it if this one crashes.
    package static func recordChild(_ pid: pid_t, in directory: String) {
        guard
            let handle = FileHandle(forWritingAtPath: directory + "/children.pids")
                ?? (FileManager.default.createFile(atPath: directory + "/children.pids", contents: nil)
                    ? FileHandle(forWritingAtPath: directory + "/children.pids") : nil)
        else { return }
        handle.seekToEndOfFile()
        handle.write(Data("\(pid)\n".utf8))
        try? handle.close()
    }

    package static func remove(_ directory: String) {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private static func removeStaleRuns(under root: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: root) else { return }
        for name in names where !name.hasPrefix(".") {  // dot-names are still being created
            let directory = root + "/" + name
            if let owner = readPids(directory + "/owner.pid").first, owner == getpid() || isAlive(owner) {
                continue  // another suite of this run, or a concurrent run: not ours to touch
            }
            if FileManager.default.fileExists(atPath: directory + "/conf/main.cf") {
                _ = try? Command.run(["postfix", "-c", directory + "/conf", "stop"], timeout: .seconds(20))
            }
            for pid in readPids(directory + "/children.pids") where commandLine(of: pid).contains(directory) {
                kill(pid, SIGKILL)  // only if the pid still belongs to a process of that run
            }
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    private static func readPids(_ path: String) -> [pid_t] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(whereSeparator: \.isNewline).compactMap { pid_t($0) }
    }

    private static func isAlive(_ pid: pid_t) -> Bool { kill(pid, 0) == 0 || errno == EPERM }

    private static func commandLine(of pid: pid_t) -> String {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return "" }
        return String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
    }
}

/// Ports already handed out in this process: suites start in parallel, and the kernel may
/// return a port again once its probe socket is closed.
private let handedOutPorts = Mutex<Set<UInt16>>([])

/// A TCP port on 127.0.0.1 that nobody listens on right now and no other suite got.
package func freeLoopbackPort() throws -> UInt16 {
    for _ in 0..<20 {
        let port = try probeFreePort()
        if handedOutPorts.withLock({ $0.insert(port).inserted }) { return port }
    }
    throw LabError("no unused loopback port found")
}

/// A port below Linux's ephemeral range (32768–60999) that binds now. A port
/// the kernel hands out for port 0 is ephemeral: between our probe and the
/// server's bind, any outgoing connection (another suite's Postfix, smtp-sink
/// clients) may take it as its local port. Ports below the range are never
/// given to outgoing connections.
private func probeFreePort() throws -> UInt16 {
    var generator = SystemRandomNumberGenerator()
    for _ in 0..<200 {
        let port = UInt16.random(in: 20_000...32_000, using: &generator)
        if try canBind(port) { return port }
    }
    throw LabError("no free loopback port between 20000 and 32000")
}

private func canBind(_ port: UInt16) throws -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw LabError("socket() failed: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    return withLoopbackAddress(port: port) { bind(fd, $0, $1) == 0 }
}
