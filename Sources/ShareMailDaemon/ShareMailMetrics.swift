import Metrics
import ShareMail

/// The numbers sharemail exports (Prometheus names in brackets):
/// messages by direction and action [sharemail_messages_total], refused
/// recipients [sharemail_recipients_rejected_total], decision latency
/// [sharemail_decision_seconds], configuration reloads
/// [sharemail_config_reloads_total]. Milter-level errors are counted by the
/// Milter layer [sharemail_milter_errors_total].
///
/// Handles are made once, after the metrics system is set up: a message
/// only increments them.
struct ShareMailMetrics: Sendable {
    private let messages: [String: Counter]
    let rejectedRecipients: Counter
    let decisionTime: Timer
    let reloadsSucceeded: Counter
    let reloadsFailed: Counter

    init() {
        var messages: [String: Counter] = [:]
        for direction in SenderRole.directions {
            for action in Decision.Action.names {
                messages["\(direction)/\(action)"] = Counter(
                    label: "sharemail_messages_total",
                    dimensions: [("direction", direction), ("action", action)])
            }
        }
        self.messages = messages
        rejectedRecipients = Counter(label: "sharemail_recipients_rejected_total")
        decisionTime = Timer(label: "sharemail_decision_seconds")
        reloadsSucceeded = Counter(label: "sharemail_config_reloads_total", dimensions: [("result", "success")])
        reloadsFailed = Counter(label: "sharemail_config_reloads_total", dimensions: [("result", "failure")])
    }

    func count(_ decision: Decision) {
        messages["\(decision.role.direction)/\(decision.action.name)"]?.increment()
    }

    func countTempfail(_ role: SenderRole) {
        messages["\(role.direction)/tempfail"]?.increment()
    }
}
