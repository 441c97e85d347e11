import Foundation
import PostfixLab
import PostgresTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The conversation-memory suites' world: one or two labs (Postfix + smtp-sink + sharemail)
/// whose sharemail configurations share one `state`, and what that state lives in (a SQLite
/// file in a scratch directory, or a database in a private PostgreSQL cluster).
final class MemoryEnvironment: Sendable {
    enum Store: Sendable {
        case sqlite  // one host, state.sqlite in a scratch directory
        case unreachablePostgres  // a postgresql:// URL to a loopback port nobody listens on
        case postgres(hosts: Int)  // a private cluster, one database shared by every host
        /// No `state` key: sharemail's default /var/lib/sharemail/state.sqlite, made for the
        /// suite (never one that exists) and removed at stop. The daemon runs as user postfix
        /// (the unit's User=) with `openFiles` descriptors, and serves metrics on `metricsPort`.
        case defaultPath(metricsPort: UInt16, openFiles: Int)
    }

    let labs: [Lab]
    let state: String  // the `state` value every lab's configuration carries (or defaults to)
    private let scratch: String?  // holds state.sqlite (or is /var/lib/sharemail); removed at stop
    private let cluster: PostgresCluster?

    /// sharemail's default state directory and file (Configuration.defaultState).
    static let defaultDirectory = "/var/lib/sharemail"
    static let defaultState = defaultDirectory + "/state.sqlite"
    /// The user the default-path suite runs the daemon as.
    static let daemonUser = "postfix"
    /// Marks a /var/lib/sharemail that a test run made (with its pid), so a crashed run's is
    /// removed and a real installation's never touched.
    private static let marker = ".sharemail-e2e-owner"

    /// Where SQLite state files live, apart from /tmp/sharemail-e2e: `RunDirectory` would take
    /// a directory there without owner.pid for a crashed run's and remove it.
    static let scratchRoot = "/tmp/sharemail-memory"

    /// The first lab: the only one for one-host suites.
    var lab: Lab { labs[0] }

    private init(labs: [Lab], state: String, scratch: String?, cluster: PostgresCluster?) {
        self.labs = labs
        self.state = state
        self.scratch = scratch
        self.cluster = cluster
    }

    /// The E2E suites' standard configuration plus `state` (nil: no key, the default).
    static func configuration(state: String?) -> String {
        // sticky_customers: a customer's new unnamed mail goes to whoever wrote to them last.
        // Tests that do not write to their customer first are not affected.
        SharemailConfig.standard(state: state)
            .replacingOccurrences(of: "forward_unnamed = true", with: "forward_unnamed = true\nsticky_customers = true")
    }

    /// `configuration`: a suite's own sharemail configuration for a `state` (the standard
    /// one's when nil).
    static func start(_ store: Store, configuration custom: (@Sendable (String) -> String)? = nil) throws -> MemoryEnvironment {
        var scratch: String?
        var cluster: PostgresCluster?
        var labs: [Lab] = []
        do {
            let state: String
            let hosts: Int
            switch store {
            case .sqlite:
                scratch = try makeScratch()
                state = scratch! + "/state.sqlite"
                hosts = 1
            case .unreachablePostgres:
                state = "postgresql://postgres@127.0.0.1:\(try freeLoopbackPort())/sharemail"
                hosts = 1
            case .postgres(let count):
                cluster = try PostgresCluster.start()
                state = try cluster!.createDatabase()
                hosts = count
            case .defaultPath(let port, let openFiles):
                scratch = try makeDefaultDirectory()
                state = defaultState
                labs.append(
                    try Lab.start(
                        sharemailConfig: "metrics = \"127.0.0.1:\(port)\"\n" + configuration(state: nil),
                        under: Lab.runsRoot, sharemailUser: daemonUser, sharemailOpenFiles: openFiles))
                hosts = 0
            }
            for _ in 0..<hosts {
                labs.append(try Lab.start(sharemailConfig: custom?(state) ?? configuration(state: state), under: Lab.runsRoot))
            }
            return MemoryEnvironment(labs: labs, state: state, scratch: scratch, cluster: cluster)
        } catch {
            for lab in labs { lab.stop() }
            cluster?.stop()
            if let scratch { try? FileManager.default.removeItem(atPath: scratch) }
            throw error as? LabError ?? LabError("\(error)")
        }
    }

    func stop(keepDirectories: Bool) {
        for lab in labs { lab.stop(keepDirectory: keepDirectories) }
        cluster?.stop()
        if let scratch, !keepDirectories { try? FileManager.default.removeItem(atPath: scratch) }
    }

    /// Per test: every lab's queue, Maildirs and sink emptied, log offsets marked.
    func beginTest() throws {
        for lab in labs { try lab.beginTest() }
    }

    /// Between the steps of one test: Maildirs and sinks emptied, log offsets moved on, so
    /// each step's expectations count only its own copies.
    func nextStep() {
        for lab in labs {
            lab.maildirs.clear()
            lab.sink.clear()
            lab.markLogs()
        }
    }

    /// Every lab's logs since the last mark.
    var diagnostics: String {
        labs.enumerated().map { index, lab in "=== host \(index + 1) ===\n" + lab.diagnostics }.joined(separator: "\n")
    }

    // MARK: The command line, as the manager runs it

    /// `sharemail ARGUMENTS --config <lab's config>`; throws unless it exits 0.
    @discardableResult
    func sharemail(_ arguments: [String], on lab: Lab? = nil) throws -> String {
        let daemon = try #require((lab ?? self.lab).sharemail)
        let result = try Command.run([daemon.binary] + arguments + ["--config", daemon.configPath], timeout: .seconds(20))
        guard result.succeeded else { throw LabError("\(result)\n\(diagnostics)") }
        return result.output
    }

    // MARK: Scratch directories

    /// /var/lib/sharemail, owned by the daemon's user, mode 0750 (as the unit's
    /// StateDirectory makes it). One that a live test run made, or a real installation's, is
    /// never touched: the suite fails instead.
    private static func makeDefaultDirectory() throws -> String {
        let directory = defaultDirectory
        if FileManager.default.fileExists(atPath: directory) {
            let owner = (try? String(contentsOfFile: directory + "/" + marker, encoding: .utf8))
                .flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            guard let owner, kill(owner, 0) != 0, errno == ESRCH else {
                throw LabError(
                    """
                    \(directory) exists and is not a dead test run's: it may be a real installation's memory, \
                    which this suite never touches (remove it by hand on a test machine)
                    """)
            }
            try FileManager.default.removeItem(atPath: directory)
        }
        guard let user = getpwnam(daemonUser) else { throw LabError("no user \(daemonUser)") }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try "\(getpid())\n".write(toFile: directory + "/" + marker, atomically: false, encoding: .utf8)
        guard chown(directory, user.pointee.pw_uid, user.pointee.pw_gid) == 0, chmod(directory, 0o750) == 0 else {
            throw LabError("cannot prepare \(directory): \(String(cString: strerror(errno)))")
        }
        return directory
    }

    /// /tmp/sharemail-memory/run-<pid>-<random>; directories of dead test processes are removed.
    private static func makeScratch() throws -> String {
        try FileManager.default.createDirectory(atPath: scratchRoot, withIntermediateDirectories: true)
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: scratchRoot)) ?? [] where entry.hasPrefix("run-") {
            let fields = entry.split(separator: "-")
            guard fields.count >= 2, let owner = pid_t(fields[1]), kill(owner, 0) != 0, errno == ESRCH else { continue }
            try? FileManager.default.removeItem(atPath: scratchRoot + "/" + entry)
        }
        let path = "\(scratchRoot)/run-\(getpid())-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        return path
    }

    @TaskLocal static var shared: Result<MemoryEnvironment, LabError>?

    static func current() throws -> MemoryEnvironment {
        guard let shared else {
            throw LabError("no memory environment: add `.memoryEnvironment(…)` to the suite's traits")
        }
        return try shared.get()
    }
}

/// Suite trait: starts the suite's memory environment before its first test and stops it
/// after the last (E2E_KEEP=1 keeps the run directories).
struct MemoryEnvironmentTrait: SuiteTrait, TestScoping {
    let store: MemoryEnvironment.Store
    var configuration: (@Sendable (String) -> String)? = nil
    var isRecursive: Bool { false }

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        let started: Result<MemoryEnvironment, LabError>
        do { started = .success(try MemoryEnvironment.start(store, configuration: configuration)) } catch {
            started = .failure(error as? LabError ?? LabError("\(error)"))
        }
        defer {
            if case .success(let environment) = started {
                environment.stop(keepDirectories: ProcessInfo.processInfo.environment["E2E_KEEP"] != nil)
            }
        }
        try await MemoryEnvironment.$shared.withValue(started) { try await function() }
    }
}

extension Trait where Self == MemoryEnvironmentTrait {
    static func memoryEnvironment(_ store: MemoryEnvironment.Store) -> Self { .init(store: store) }

    /// The memory environment with the suite's own configuration for a `state`.
    static func memoryEnvironment(_ store: MemoryEnvironment.Store, configuration: @escaping @Sendable (String) -> String) -> Self {
        .init(store: store, configuration: configuration)
    }
}
