import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Runs external programs (postfix, smtp-sink, sendmail, sharemail) with posix_spawn.
///
/// Why not Foundation.Process: it reaps children on its own thread, so the harness could not
/// send SIGKILL to a pid it still owns or wait for it with a timeout of its own.
package enum Command {
    package struct Result: Sendable, CustomStringConvertible {
        package let argv: [String]
        package let status: Int32  // exit status, or 128+signal
        package let output: String  // stdout and stderr, merged
        package var succeeded: Bool { status == 0 }
        package var description: String { "`\(argv.joined(separator: " "))` exited \(status): \(output)" }
    }

    /// Runs a short command to completion, feeding `stdin`, and kills it after `timeout`.
    package static func run(
        _ argv: [String], stdin: [UInt8] = [], timeout: Duration = .seconds(30)
    ) throws -> Result {
        let scratch = FileManager.default.temporaryDirectory
            .appendingPathComponent("sharemail-lab-cmd-\(UUID().uuidString)").path
        let inputPath = scratch + ".in", outputPath = scratch + ".out"
        defer {
            unlink(inputPath)
            unlink(outputPath)
        }
        guard FileManager.default.createFile(atPath: inputPath, contents: Data(stdin)) else {
            throw LabError("cannot write \(inputPath)")
        }
        let pid = try spawn(argv, stdinPath: inputPath, outputPath: outputPath, newProcessGroup: false)
        let status =
            try wait(pid, timeout: timeout)
            ?? {
                kill(pid, SIGKILL)
                _ = try? wait(pid, timeout: .seconds(5))
                throw LabError("`\(argv.joined(separator: " "))` did not finish within \(timeout)")
            }()
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        return Result(argv: argv, status: status, output: output)
    }

    /// Starts a long-running program with stdout and stderr appended to `outputPath`.
    /// It gets its own process group so a ^C to `swift test` or the sandbox does not race their teardown.
    package static func spawn(
        _ argv: [String], stdinPath: String = "/dev/null", outputPath: String,
        newProcessGroup: Bool = true
    ) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdinPath, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The child inherits the spawning thread's signal mask and ignored signals; the test
        // runner's threads may block SIGTERM, which would make every SIGTERM wait for SIGKILL.
        var flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        var noSignals = sigset_t(), termSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        sigemptyset(&termSignals)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&termSignals, signal) }
        posix_spawnattr_setsigdefault(&attributes, &termSignals)
        if newProcessGroup {
            flags |= Int32(POSIX_SPAWN_SETPGROUP)
            posix_spawnattr_setpgroup(&attributes, 0)
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))

        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, argv[0], &actions, &attributes, &cArgs, environ)
        guard rc == 0 else {
            throw LabError("cannot start `\(argv.joined(separator: " "))`: \(String(cString: strerror(rc)))")
        }
        return pid
    }

    /// Waits for `pid` to exit; nil when it is still running after `timeout`.
    package static func wait(_ pid: pid_t, timeout: Duration) throws -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while true {
            var status: Int32 = 0
            let rc = waitpid(pid, &status, WNOHANG)
            if rc == pid {
                let signal = status & 0x7f
                return signal == 0 ? (status >> 8) & 0xff : 128 + signal
            }
            if rc < 0 { throw LabError("waitpid(\(pid)) failed: \(String(cString: strerror(errno)))") }
            if ContinuousClock.now >= deadline { return nil }
            usleep(10_000)
        }
    }

    /// SIGTERM, then SIGKILL if the process is still there after `grace`; always reaps it.
    package static func terminate(_ pid: pid_t, grace: Duration = .seconds(5)) {
        kill(pid, SIGTERM)
        if (try? wait(pid, timeout: grace)) ?? nil != nil { return }
        kill(pid, SIGKILL)
        _ = try? wait(pid, timeout: .seconds(5))
    }
}

/// One error type for the lab: a sentence that says what went wrong and where to look.
package struct LabError: Error, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes. Every wait of the lab goes
/// through here so none of them can hang the run.
package func poll(timeout: Duration, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try condition() { return true }
        if ContinuousClock.now >= deadline { return false }
        usleep(50_000)
    }
}
