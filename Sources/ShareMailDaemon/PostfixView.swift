import Foundation

/// What Postfix says about itself: parameters (with defaults, $names
/// expanded), master.cf services, and table lookups.
public struct PostfixView {
    /// A Postfix command that failed.
    struct Failed: Error, CustomStringConvertible {
        let description: String
    }

    var parameters: [String: String]
    /// master.cf rows: service name, type, chroot column, command.
    var services: [(name: String, type: String, chroot: String, command: String)]
    var lookup: (_ table: String, _ key: String) -> String?

    public static func read(directory: String?) throws -> PostfixView {
        let dirArgs = directory.map { ["-c", $0] } ?? []
        let main = try run("postconf", dirArgs + ["-x"])
        var parameters: [String: String] = [:]
        for line in main.split(separator: "\n") {
            guard let eq = line.range(of: " = ") ?? line.range(of: " =") else { continue }
            parameters[String(line[..<eq.lowerBound])] = String(line[eq.upperBound...]).trimmingCharacters(in: " ")
        }
        let master = try run("postconf", dirArgs + ["-M"])
        let services = master.split(separator: "\n").compactMap { line -> (String, String, String, String)? in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 8 else { return nil }
            return (String(fields[0]), String(fields[1]), String(fields[4]), String(fields[7]))
        }
        return PostfixView(parameters: parameters, services: services.map { (name: $0.0, type: $0.1, chroot: $0.2, command: $0.3) }) {
            table, key in
            let answer = try? run("postmap", dirArgs + ["-q", key, table])
            return answer.flatMap { $0.isEmpty ? nil : $0.trimmingCharacters(in: "\n ") }
        }
    }

    /// A parameter's list value (commas and white space separate).
    func list(_ name: String) -> [String] {
        splitList(parameters[name] ?? "")
    }

    /// Splits a Postfix list, keeping `{ … }` groups whole.
    func splitList(_ value: String) -> [String] {
        var items: [String] = []
        var current = ""
        var depth = 0
        for c in value {
            if c == "{" { depth += 1 }
            if c == "}" { depth = max(0, depth - 1) }
            if depth == 0, c == "," || c == " " || c == "\t" || c == "\n" {
                if !current.isEmpty { items.append(current) }
                current = ""
            } else {
                current.append(c)
            }
        }
        if !current.isEmpty { items.append(current) }
        return items
    }

    private static func run(_ command: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/\(command)")
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = Pipe()
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failed(description: "\(command) \(arguments.joined(separator: " ")) exited with \(process.terminationStatus)")
        }
        return String(decoding: data, as: UTF8.self)
    }
}
