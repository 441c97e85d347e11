import Foundation
import ShareMail

/// One configuration file, split by lifetime: the policy a reload replaces,
/// and the daemon's settings, read at start.
public struct ConfigurationFile: Sendable {
    public var policy: Configuration
    public var daemon: DaemonSettings

    public struct Unreadable: Error, CustomStringConvertible {
        public let path: String
        public let reason: String
        public var description: String { "\(path): cannot read: \(reason)" }
    }

    /// Reads the file from disk: the one place the daemon and the commands
    /// touch the file system for configuration.
    public static func load(_ path: String) throws -> (ConfigurationFile, [ConfigurationProblem]) {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw Unreadable(path: path, reason: (error as NSError).localizedDescription)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw Unreadable(path: path, reason: "not UTF-8 text")
        }
        return try load(text: text, file: path)
    }

    /// Parses and validates both parts; throws every problem found.
    public static func load(text: String, file: String) throws(ConfigurationErrors) -> (ConfigurationFile, [ConfigurationProblem]) {
        let (policy, daemon, warnings) = try ConfigurationLoader.load(
            text: text, file: file, settingsKeys: Set(DaemonSettings.keys.map(\.name)), settings: DaemonSettings.read,
            together: checkTogether)
        return (ConfigurationFile(policy: policy, daemon: daemon), warnings)
    }

    /// What only the two parts together can tell.
    static func checkTogether(_ policy: Configuration, _ daemon: DaemonSettings, _ reader: inout ConfigurationReader) {
        // The turn lives in the conversation memory: without one there is nobody to ask.
        for (index, mailbox) in policy.mailboxes.enumerated() where mailbox.unnamed == .roundRobin && daemon.state == nil {
            reader.problem(
                "mailbox[\(index)].unnamed",
                "\"round-robin\" needs the conversation memory, which holds the turn: remove state = \"off\" or choose \"manager\" or \"all\"")
        }
    }
}
