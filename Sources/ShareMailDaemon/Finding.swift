/// One result of `sharemail doctor`, with how to fix it.
public struct Finding: CustomStringConvertible {
    public enum Level: String { case ok = "OK  ", warn = "WARN", fail = "FAIL" }
    public let level: Level
    public let text: String
    public var fix: String?

    public init(level: Level, text: String, fix: String? = nil) {
        self.level = level
        self.text = text
        self.fix = fix
    }

    public var description: String {
        "\(level.rawValue) \(text)" + (fix.map { "\n     fix: \($0)" } ?? "")
    }
}
