/// A round-robin turn the engine needs before it can decide: the message
/// starts a conversation in `mailbox`, which gives those to its staff in
/// turn. The memory takes the turn atomically (two hosts sharing it never
/// give the same one twice) and answers in `ConversationMemory.turn`.
public struct TurnRequest: Sendable, Hashable {
    /// The unified address.
    public var mailbox: EmailAddress
    /// Every staff of the mailbox, in configuration order: the order of turns.
    public var order: [EmailAddress]
    /// Those who may take this turn (not away), in the same order.
    public var available: [EmailAddress]

    public init(mailbox: EmailAddress, order: [EmailAddress], available: [EmailAddress]) {
        self.mailbox = mailbox
        self.order = order
        self.available = available
    }
}
