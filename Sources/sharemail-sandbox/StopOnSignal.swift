import Dispatch
import PostfixLab
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Ctrl-C (or SIGTERM, SIGHUP) stops Postfix, smtp-sink and sharemail before the sandbox exits.
///
/// The daemons run in process groups of their own (and the Postfix master detaches), so a
/// Ctrl-C reaches only the sandbox: without this they would outlive it until the next run
/// cleans up after it.
enum StopOnSignal {
    private enum State {
        case starting(interrupted: Bool)  // Lab.start is running: stop right after it
        case running(Lab)
        case stopped
    }

    /// Held while stopping, so a signal during the normal stop waits for it instead of exiting
    /// halfway, and the lab is stopped exactly once.
    private static let state = Mutex<State>(.starting(interrupted: false))

    /// Hands over the started lab; false when a signal came during the start (the lab is
    /// stopped then, and the caller should exit with `Sandbox.ExitStatus.interrupted`).
    static func started(_ lab: Lab, keep: Bool) -> Bool {
        state.withLock { state in
            if case .starting(interrupted: true) = state {
                lab.stop(keepDirectory: keep)
                state = .stopped
                return false
            }
            state = .running(lab)
            return true
        }
    }

    /// Set first thing by a signal: what the sandbox sees afterwards is the stop, not sharemail.
    private static let interrupted = Atomic<Bool>(false)

    /// After a signal, waits for the signal handler to stop everything and exit, so that the
    /// cases it broke are not reported as sharemail's failures.
    static func waitIfInterrupted() {
        guard interrupted.load(ordering: .acquiring) else { return }
        while true { sleep(60) }
    }

    /// The start failed: nothing to stop.
    static func startFailed() { state.withLock { $0 = .stopped } }

    /// Stops the lab if it still runs.
    static func stop(keep: Bool) {
        state.withLock { state in
            if case .running(let lab) = state { lab.stop(keepDirectory: keep) }
            state = .stopped
        }
    }

    /// Keep the returned sources alive while the lab runs.
    static func install(keep: Bool) -> [any DispatchSourceSignal] {
        [SIGINT, SIGTERM, SIGHUP].map { number in
            signal(number, SIG_IGN)  // delivered to the dispatch source instead
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                interrupted.store(true, ordering: .releasing)
                sayError("\nsharemail-sandbox: interrupted, stopping Postfix, smtp-sink and sharemail…")
                let exitNow = state.withLock { state -> Bool in
                    switch state {
                    case .starting:
                        state = .starting(interrupted: true)
                        return false  // `started` stops the lab as soon as it exists
                    case .running(let lab):
                        lab.stop(keepDirectory: keep)
                        state = .stopped
                        return true
                    case .stopped:
                        return true
                    }
                }
                if exitNow { exit(Sandbox.ExitStatus.interrupted) }
            }
            source.resume()
            return source
        }
    }
}
