// A private PostgreSQL cluster for tests: initdb into a fresh directory under
// /tmp/sharemail-pg, trust authentication, listening on 127.0.0.1 at a free
// port with its socket in that directory; never the system's own cluster.
// The store tests and the end-to-end tests (two MX hosts sharing one
// database) both start it.
import Foundation
import Glibc
import PostfixLab

package final class PostgresCluster: Sendable {
    /// Parent of every cluster; a crashed run's clusters are stopped and removed from here.
    package static let parent = "/tmp/sharemail-pg"

    package let directory: String  // run-<pid>-<n>, owned by the server's user
    package let port: Int  // on 127.0.0.1
    private let binaries: String  // /usr/lib/postgresql/<version>/bin

    package var dataDirectory: String { directory + "/data" }

    /// Starts a new cluster (stale ones from dead test processes are cleaned up first).
    package static func start() throws -> PostgresCluster {
        let binaries = try findBinaries()
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        removeStaleClusters(binaries: binaries)
        // A port free when probed can still be taken before the server binds it (by
        // another test's listener); the server then exits, and a new port is tried.
        var attempt = 1
        while true {
            do {
                return try start(binaries: binaries)
            } catch let error as ClusterError where error.portTaken && attempt < 3 {
                attempt += 1
            }
        }
    }

    private static func start(binaries: String) throws -> PostgresCluster {
        let directory = "\(parent)/run-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        let cluster = PostgresCluster(directory: directory, port: try freePort(), binaries: binaries)
        do {
            try cluster.initialise()
            try cluster.startServer()
        } catch {
            cluster.stop()
            throw error
        }
        return cluster
    }

    private init(directory: String, port: Int, binaries: String) {
        self.directory = directory
        self.port = port
        self.binaries = binaries
    }

    /// A new, empty database; returns its URL.
    package func createDatabase() throws -> String {
        let name = "sharemail_" + UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: "")
        try Self.run(binaries + "/createdb", ["-h", "127.0.0.1", "-p", "\(port)", "-U", "postgres", name])
        return "postgresql://postgres@127.0.0.1:\(port)/\(name)"
    }

    /// Runs SQL through psql, as the superuser; returns its unaligned output.
    @discardableResult
    package func psql(_ sql: String, database: String = "postgres") throws -> String {
        try Self.run(
            binaries + "/psql",
            ["-h", "127.0.0.1", "-p", "\(port)", "-U", "postgres", "-d", database, "-X", "-A", "-t", "-c", sql])
    }

    /// The postmaster and its children (backends), read from /proc.
    package var serverPIDs: [pid_t] { Self.serverPIDs(dataDirectory: dataDirectory) }

    private static func serverPIDs(dataDirectory: String) -> [pid_t] {
        // The postmaster's id is the first line of postmaster.pid.
        guard let text = try? String(contentsOfFile: dataDirectory + "/postmaster.pid", encoding: .utf8),
            let postmaster = text.split(separator: "\n").first.flatMap({ pid_t($0) }),
            // Still this cluster's postmaster, not a process that reused the id.
            let commandLine = FileManager.default.contents(atPath: "/proc/\(postmaster)/cmdline"),
            String(decoding: commandLine, as: UTF8.self).contains(dataDirectory)
        else { return [] }
        var pids = [postmaster]
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in entries {
            guard let pid = pid_t(entry),
                let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            // Fields after "(comm)": state, ppid, …
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, pid_t(fields[1]) == postmaster { pids.append(pid) }
        }
        return pids
    }

    /// Stops the server at once and removes its directory.
    package func stop() {
        Self.stopServer(dataDirectory: dataDirectory, binaries: binaries)
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Stops the server, keeping its files (to test a database that went away). A clean
    /// shutdown: with fsync and synchronous_commit off, a crash would lose recent commits.
    package func stopServer() throws {
        try Self.run(binaries + "/pg_ctl", ["-D", dataDirectory, "-m", "fast", "-w", "stop"], asServerUser: true)
    }

    // MARK: Setting up

    private func initialise() throws {
        if getuid() == 0 {
            // The server refuses to run as root: the directory belongs to postgres.
            guard let user = getpwnam("postgres") else {
                throw ClusterError("no 'postgres' user: is PostgreSQL installed? Run scripts/install-deps as root")
            }
            guard chown(directory, user.pointee.pw_uid, user.pointee.pw_gid) == 0 else {
                throw ClusterError("chown \(directory): \(String(cString: strerror(errno)))")
            }
        }
        try Self.run(
            binaries + "/initdb",
            ["-D", dataDirectory, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
            asServerUser: true)
    }

    /// Starts the server; when it does not come up, the error carries the end of its log
    /// (the log is deleted with the cluster).
    package func startServer() throws {
        let options = [
            "-p \(port)", "-k \(directory)", "-c listen_addresses=127.0.0.1",
            "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off", "-c max_connections=200",
        ].joined(separator: " ")
        let log = directory + "/server.log"
        do {
            try Self.run(
                binaries + "/pg_ctl",
                ["-D", dataDirectory, "-l", log, "-o", options, "-w", "-t", "60", "start"],
                asServerUser: true)
        } catch let error as ClusterError {
            let lines = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").suffix(15)
            throw ClusterError(
                "\(error.description)\nserver.log (port \(port)), last lines:\n\(lines.joined(separator: "\n"))",
                portTaken: lines.contains { $0.contains("could not bind") })
        }
    }

    private static func findBinaries() throws -> String {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [])
            .compactMap(Int.init).sorted()
        for version in versions.reversed() where FileManager.default.isExecutableFile(atPath: "\(root)/\(version)/bin/initdb") {
            return "\(root)/\(version)/bin"
        }
        throw ClusterError(
            "PostgreSQL is not installed (no \(root)/<version>/bin/initdb): run scripts/install-deps as root (Debian package postgresql)")
    }

    /// Stops and removes clusters whose test process is gone.
    private static func removeStaleClusters(binaries: String) {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? []
        for entry in entries where entry.hasPrefix("run-") {
            let fields = entry.split(separator: "-")
            guard fields.count >= 2, let owner = pid_t(fields[1]) else { continue }
            if kill(owner, 0) == 0 || errno != ESRCH { continue }  // its test process still runs
            let directory = "\(parent)/\(entry)"
            stopServer(dataDirectory: directory + "/data", binaries: binaries)
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    /// Immediate shutdown, whatever state the server is in: a crashed test may have left it
    /// frozen (SIGSTOP), so it is woken first, and killed if pg_ctl cannot stop it.
    private static func stopServer(dataDirectory: String, binaries: String) {
        let pids = serverPIDs(dataDirectory: dataDirectory)
        for pid in pids { kill(pid, SIGCONT) }
        _ = try? run(binaries + "/pg_ctl", ["-D", dataDirectory, "-m", "immediate", "-w", "-t", "10", "stop"], asServerUser: true)
        for pid in pids where kill(pid, 0) == 0 { kill(pid, SIGKILL) }
    }

    /// A port on 127.0.0.1 that nobody listens on now, below the ephemeral range, and not
    /// handed out to another server of this test process.
    package static func freePort() throws -> Int { Int(try freeLoopbackPort()) }

    /// Runs a program to completion; throws with its output when it fails.
    ///
    /// posix_spawn and waitpid, not Foundation's Process: on Linux, Process learns of the
    /// exit through a descriptor the child inherits, and the server that pg_ctl leaves
    /// running would hold it open, so waitUntilExit would never return.
    @discardableResult
    package static func run(_ program: String, _ arguments: [String], asServerUser: Bool = false) throws -> String {
        let command =
            asServerUser && getuid() == 0
            ? ["/usr/sbin/runuser", "-u", "postgres", "--", program] + arguments : [program] + arguments
        // From "/", which the server's user can always read (unlike, perhaps, our working directory).
        let argv = ["/bin/sh", "-c", "cd / && exec \"$0\" \"$@\""] + command
        let outputPath = NSTemporaryDirectory() + "sharemail-pg-\(UUID().uuidString).out"
        defer { unlink(outputPath) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        let cArguments = argv.map { strdup($0) } + [nil]
        defer { for argument in cArguments { free(argument) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, cArguments, environ)
        guard spawned == 0 else { throw ClusterError("spawn \(command[0]): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}

        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        let exited = status & 0x7f == 0
        let code = (status >> 8) & 0xff
        guard exited && code == 0 else {
            throw ClusterError(
                "\(command.joined(separator: " ")) \(exited ? "exited \(code)" : "killed by signal \(status & 0x7f)"): \(text)")
        }
        return text
    }
}

package struct ClusterError: Error, CustomStringConvertible {
    package let description: String
    /// The server could not bind its port: someone took it after it was probed.
    package let portTaken: Bool
    package init(_ description: String, portTaken: Bool = false) {
        self.description = description
        self.portTaken = portTaken
    }
}
