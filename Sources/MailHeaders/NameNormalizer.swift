// Comparable form of a display name, for routing by name.
import Foundation

public enum NameNormalizer {
    /// Unicode NFKC, full case folding, whitespace runs (incl. U+3000) collapsed to one
    /// space and trimmed, surrounding quotes/brackets removed repeatedly. Full-width and
    /// half-width forms compare equal afterwards. Deterministic (no locale).
    public static func normalize(_ name: String) -> String {
        var s = name.precomposedStringWithCompatibilityMapping
        // Full case folding (ß → ss) and lowercasing; NFKC again so the result is stable.
        s = s.folding(options: [.caseInsensitive], locale: nil).lowercased()
        s = s.precomposedStringWithCompatibilityMapping
        s = collapseWhitespace(s)
        while let inner = strippingPair(s) {
            s = collapseWhitespace(inner)
        }
        return s
    }

    private static let pairs: [(Character, Character)] = [
        ("\"", "\""), ("'", "'"), ("\u{201C}", "\u{201D}"), ("\u{2018}", "\u{2019}"),
        ("\u{300C}", "\u{300D}"), ("\u{300E}", "\u{300F}"), ("(", ")"), ("<", ">"), ("[", "]"),
        ("\u{3010}", "\u{3011}"), ("\u{300A}", "\u{300B}"), ("\u{3008}", "\u{3009}"),
        ("{", "}"), ("\u{00AB}", "\u{00BB}"),
    ]

    private static func strippingPair(_ s: String) -> String? {
        guard s.count >= 2, let f = s.first, let l = s.last else { return nil }
        for (open, close) in pairs where f == open && l == close {
            return String(s.dropFirst().dropLast())
        }
        return nil
    }

    private static func collapseWhitespace(_ s: String) -> String {
        var out = String.UnicodeScalarView()
        var pending = false
        for c in s.unicodeScalars {
            if c == "\u{200B}" || c == "\u{FEFF}" { continue }  // invisible; never part of a name
            if c.properties.isWhitespace {
                pending = !out.isEmpty
            } else {
                if pending { out.append(" ") }
                pending = false
                out.append(c)
            }
        }
        return String(out)
    }
}
