import ArgumentParser
import Foundation
import ShareMail

/// Reads a configuration file from disk: the one place the CLI touches the
/// file system for configuration.
enum ConfigurationFile {
    struct Unreadable: Error, CustomStringConvertible {
        let path: String
        let reason: String
        var description: String { "\(path): cannot read: \(reason)" }
    }

    static func load(_ path: String) throws -> (Configuration, [ConfigurationProblem]) {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw Unreadable(path: path, reason: (error as NSError).localizedDescription)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw Unreadable(path: path, reason: "not UTF-8 text")
        }
        return try ConfigurationLoader.load(text: text, file: path)
    }
}

/// `--config FILE`: the option of every command that reads the configuration.
struct ConfigurationFileOption: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The TOML configuration file.", valueName: "file"))
    var config: String = "/etc/sharemail/sharemail.toml"
}
