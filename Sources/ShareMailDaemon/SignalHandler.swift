import Foundation
import Logging
import Milter

/// Takes the process's signals on a thread of its own (they are blocked
/// everywhere else): SIGUSR1 reloads; SIGTERM, SIGINT and SIGHUP drain, then
/// stop; a second stop signal stops at once.
struct SignalHandler: Sendable {
    let reloader: Reloader
    /// false: libmilter's own signal thread takes the stop signals.
    let drains: Bool
    let drainTimeout: Duration
    let logger: Logger

    func start() {
        DaemonThread.start("sm-signals") { [self] in
            var stopping = false
            while true {
                switch Milter.waitForSignal(stopSignals: drains) {
                case .reload:
                    reloader.reload()
                case .stop(let name) where !stopping:
                    stopping = true
                    DaemonThread.start("sm-drain") { [self] in self.drain(after: name) }
                case .stop(let name):
                    logger.warning("\(name) again: stopping now; \(Milter.messagesInFlight) message(s) in flight are deferred by Postfix")
                    Milter.stop()
                }
            }
        }
    }

    /// The milter layer's drain, with sharemail's log lines around it.
    func drain(after signal: String) {
        logger.notice(
            "\(signal): stopping; new mail is deferred",
            metadata: [
                "in_flight": "\(Milter.messagesInFlight)", "drain_timeout": "\(drainTimeout)",
            ])
        Milter.shutdown(timeout: drainTimeout) { pending, left in
            if left > 0 {
                logger.warning("drain timed out: \(left) message(s) still in flight are deferred by Postfix and retried")
            } else if pending > 0 {
                logger.notice("the \(pending) message(s) in flight are finished")
            }
        }
    }
}
