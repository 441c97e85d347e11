/// Who besides the manager gets Internet mail to a unified address that
/// names no staff, reaches no known thread and no sticky customer
/// (`unnamed` in `[[mailbox]]`).
public enum UnnamedRule: String, Sendable, Hashable, CaseIterable {
    /// The manager only (`forward_unnamed = false`, the default).
    case manager
    /// Every staff who is not away (`forward_unnamed = true`).
    case all
    /// The staff whose turn it is, skipping those away: one new
    /// conversation each in configuration order. The turn lives in the
    /// conversation memory, so hosts that share it take turns together.
    case roundRobin = "round-robin"
}
