import Logging
import ShareMail

/// Reloads the configuration (on SIGUSR1): the policy is replaced; the
/// daemon's settings need a restart, and a reload that changes one says so.
struct Reloader: Sendable {
    let path: String
    let running: DaemonSettings
    let policy: PolicyStore
    let metrics: ShareMailMetrics?
    let logger: Logger

    func reload() {
        do {
            let (file, warnings) = try ConfigurationFile.load(path)
            for warning in warnings { logger.warning("\(warning)") }
            policy.replace(PolicyEngine(configuration: file.policy))
            metrics?.reloadsSucceeded.increment()
            logger.notice(
                "configuration reloaded",
                metadata: [
                    "config": "\(path)", "mailboxes": "\(file.policy.mailboxes.count)",
                    "staff": "\(file.policy.mailboxes.reduce(0) { $0 + $1.staff.count })",
                ])
            let unapplied = file.daemon.restartKeys(changedFrom: running)
            if !unapplied.isEmpty {
                logger.warning(
                    "\(unapplied.joined(separator: ", ")) changed: takes effect at the next start",
                    metadata: ["keys": "\(unapplied.joined(separator: ","))"])
            }
        } catch {
            metrics?.reloadsFailed.increment()
            logger.error(
                "reload refused: the running configuration stays in force",
                metadata: [
                    "config": "\(path)", "problems": "\("\(error)".replacingOccurrences(of: "\n", with: "; "))",
                ])
        }
    }
}
