/// The display name staff mail leaves under (`from_name`), such as
/// `"{name} | Example Sales"`: `{name}` is the staff's name. Customers
/// answer that rendered name; the engine routes it, and the plain name, to
/// the staff.
public struct FromNameTemplate: Sendable, Hashable, CustomStringConvertible {
    /// The literal text around the placeholders: `name` goes between each
    /// two pieces.
    private let pieces: [String]
    /// The template as written.
    public let description: String

    /// The default: the staff's name alone.
    public static let plain = FromNameTemplate(checked: ["", ""], text: placeholder)

    static let placeholder = "{name}"

    private init(checked pieces: [String], text: String) {
        self.pieces = pieces
        self.description = text
    }

    /// Why `text` is no usable template: no `{name}`, an unknown
    /// placeholder, a brace without its partner. nil when it is fine.
    public static func problem(in text: String) -> String? {
        var rest = Substring(text)
        var named = false
        while let open = rest.firstIndex(where: { $0 == "{" || $0 == "}" }) {
            guard rest[open] == "{", let close = rest[open...].firstIndex(of: "}") else {
                return "\"\(text)\" has a \"\(rest[open])\" without its partner; the only placeholder is {name}"
            }
            let placeholder = rest[open...close]
            guard placeholder == Self.placeholder else {
                return "\"\(text)\": unknown placeholder \(placeholder); the only placeholder is {name}"
            }
            named = true
            rest = rest[rest.index(after: close)...]
        }
        return named ? nil : "\"\(text)\" has no {name}: customers could not tell the staff apart, nor reply to one"
    }

    /// A template, or nil when `problem(in:)` finds one.
    public init?(_ text: String) {
        guard Self.problem(in: text) == nil else { return nil }
        self.init(checked: text.components(separatedBy: Self.placeholder), text: text)
    }

    /// The display name for the staff called `name`.
    public func render(_ name: String) -> String {
        pieces.joined(separator: name)
    }

    /// Renders to the plain name: the template adds nothing.
    public var isPlain: Bool { pieces == ["", ""] }
}
