// Charset decoding for header text: MIME charset labels → Swift strings.
//
// Labels are mapped to what real mail means (GB2312 is sent as GBK/GB18030,
// Shift_JIS as CP932, EUC-KR as CP949, …) and decoded with glibc iconv.
// Nothing is cached: each conversion opens and closes its own iconv_t.
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

enum Charset {
    /// Decode `bytes` labelled `label` strictly: nil when the label is unknown
    /// or the bytes are not valid in it (including a truncated last character).
    static func decode(_ bytes: [UInt8], label: String) -> String? {
        guard let plan = plan(for: label) else { return nil }
        switch plan {
        case .utf8:
            return validUTF8(bytes)
        case .ascii:
            // Mislabelled 8-bit text is common; UTF-8 first, then Windows-1252/Latin-1.
            if let s = validUTF8(bytes) { return s }
            return iconvDecode(bytes, from: "CP1252") ?? latin1(bytes)
        case .latin1:
            // WHATWG: "iso-8859-1" means windows-1252 on the wire; Latin-1 for its holes.
            return iconvDecode(bytes, from: "CP1252") ?? latin1(bytes)
        case .hz:
            return decodeHZ(bytes)
        case .userDefined:
            return userDefined(bytes)
        case .iconv(let names):
            for name in names {
                if let s = iconvDecode(bytes, from: name) { return s }
            }
            return nil
        }
    }

    /// True when `label` names a charset this module can decode.
    static func isKnown(_ label: String) -> Bool {
        guard let plan = plan(for: label) else { return false }
        if case .iconv(let names) = plan {
            return names.contains { iconvAvailable($0) }
        }
        return true
    }

    static func validUTF8(_ bytes: [UInt8]) -> String? {
        String(validating: bytes, as: UTF8.self)
    }

    static func userDefined(_ bytes: [UInt8]) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(Unicode.Scalar(b < 0x80 ? UInt32(b) : 0xF780 + UInt32(b - 0x80))!) }
        return String(s)
    }

    static func latin1(_ bytes: [UInt8]) -> String {
        var s = String.UnicodeScalarView()
        s.reserveCapacity(bytes.count)
        for b in bytes { s.append(Unicode.Scalar(b)) }
        return String(s)
    }

    // MARK: - Label mapping

    enum Plan: Equatable {
        case utf8, ascii, latin1, hz
        /// WHATWG x-user-defined: ASCII, and bytes 0x80–0xFF as U+F780–U+F7FF.
        case userDefined
        case iconv([String])  // iconv names, tried in order
    }

    /// Plans by label as written; bounded so hostile labels can't grow it.
    private static let plans = Mutex<[String: Plan?]>([:])

    static func plan(for label: String) -> Plan? {
        if let cached = plans.withLock({ $0[label] }) { return cached }
        let plan = computePlan(for: label)
        plans.withLock { cache in
            if cache.count < 256 { cache[label] = plan }
        }
        return plan
    }

    private static func computePlan(for label: String) -> Plan? {
        let name = CharsetLabels.normalized(label)
        // Keep iconv away from odd names ("//TRANSLIT", paths, spaces).
        guard !name.isEmpty, name.utf8.count <= 40,
            name.utf8.allSatisfy({ isLabelByte($0) })
        else { return nil }
        if let encoding = CharsetLabels.encodingByLabel[name] {
            return CharsetLabels.plan(encoding: encoding, label: name)
        }
        // ISO-8859-n and Windows-125n in spellings no table lists
        // (iso8859_5 is iso8859-5 once normalised; win-1251, cp-1251).
        for prefix in ["iso-8859-", "iso8859-", "iso-8859"] where name.hasPrefix(prefix) {
            if let n = Int(name.dropFirst(prefix.count)), (1...16).contains(n), n != 12 {
                return n == 1 ? .latin1 : .iconv(["ISO-8859-\(n)"])
            }
        }
        for prefix in ["windows-", "cp", "x-cp", "win-", "cp-", "ms-"] where name.hasPrefix(prefix) {
            if let n = Int(name.dropFirst(prefix.count)), (1250...1258).contains(n) {
                return .iconv(["CP\(n)"])
            }
        }
        // Anything else iconv knows by this name (UTF-7, TIS-620, …).
        return .iconv([name.uppercased()])
    }

    private static func isLabelByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: ":"):
            return true
        default:
            return false
        }
    }

    // MARK: - iconv

    private static func openDecoder(_ from: String) -> iconv_t? {
        let cd = iconv_open("UTF-8", from)
        // (iconv_t)-1 signals failure.
        guard let cd, Int(bitPattern: cd) != -1 else { return nil }
        return cd
    }

    /// iconv names already probed; bounded so hostile labels can't grow it.
    private static let probed = Mutex<[String: Bool]>([:])

    static func iconvAvailable(_ name: String) -> Bool {
        if let known = probed.withLock({ $0[name] }) { return known }
        let ok: Bool
        if let cd = openDecoder(name) {
            iconv_close(cd)
            ok = true
        } else {
            ok = false
        }
        probed.withLock { cache in
            if cache.count < 256 { cache[name] = ok }
        }
        return ok
    }

    /// An open iconv descriptor; used by one thread at a time (it is taken out of the pool).
    private struct Descriptor: @unchecked Sendable {
        let cd: iconv_t
    }

    /// Idle descriptors by charset: iconv_open costs more than a whole short conversion.
    /// Bounded: at most 4 per charset, 64 charsets.
    private static let idle = Mutex<[String: [Descriptor]]>([:])

    private static func withDecoder<R>(_ from: String, _ body: (iconv_t) -> R) -> R? {
        let pooled = idle.withLock { $0[from]?.popLast() }
        let d: Descriptor
        if let pooled {
            d = pooled
            iconv(d.cd, nil, nil, nil, nil)  // back to the initial shift state
        } else {
            guard let cd = openDecoder(from) else { return nil }
            d = Descriptor(cd: cd)
        }
        let result = body(d.cd)
        let kept = idle.withLock { pool -> Bool in
            guard pool[from, default: []].count < 4, pool.count < 64 || pool[from] != nil else { return false }
            pool[from, default: []].append(d)
            return true
        }
        if !kept { iconv_close(d.cd) }
        return result
    }

    /// Strict conversion to UTF-8; nil on unknown charset, invalid or truncated input.
    static func iconvDecode(_ bytes: [UInt8], from: String) -> String? {
        if bytes.isEmpty { return iconvAvailable(from) ? "" : nil }
        return withDecoder(from) { convert(bytes, with: $0) } ?? nil
    }

    private static func convert(_ bytes: [UInt8], with cd: iconv_t) -> String? {
        guard let output = convertBytes(bytes, with: cd) else { return nil }
        return String(validating: output, as: UTF8.self)
    }

    /// Runs `cd` over all of `bytes` and flushes its shift state; nil on any error.
    private static func convertBytes(_ bytes: [UInt8], with cd: iconv_t) -> [UInt8]? {
        var input = bytes
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count * 2)
        var chunk = [UInt8](repeating: 0, count: min(4096, bytes.count * 4 + 16))
        let ok = input.withUnsafeMutableBufferPointer { inBuf -> Bool in
            var inPtr: UnsafeMutablePointer<CChar>? = UnsafeMutableRawPointer(inBuf.baseAddress!)
                .assumingMemoryBound(to: CChar.self)
            var inLeft = inBuf.count
            var flushing = false
            while true {
                let (result, err, wrote) = chunk.withUnsafeMutableBufferPointer { outBuf -> (Int, Int32, Int) in
                    var outPtr: UnsafeMutablePointer<CChar>? = UnsafeMutableRawPointer(outBuf.baseAddress!)
                        .assumingMemoryBound(to: CChar.self)
                    var outLeft = outBuf.count
                    let r =
                        flushing
                        ? iconv(cd, nil, nil, &outPtr, &outLeft)  // flush shift state (ISO-2022-*)
                        : iconv(cd, &inPtr, &inLeft, &outPtr, &outLeft)
                    return (r, r == -1 ? errno : 0, outBuf.count - outLeft)
                }
                output.append(contentsOf: chunk[0..<wrote])
                if result == -1 {
                    if err == E2BIG { continue }
                    return false  // EILSEQ, or EINVAL: truncated last character
                }
                if flushing { return true }
                if inLeft == 0 { flushing = true }
            }
        }
        guard ok else { return nil }
        return output
    }

    // MARK: - Encoding (rare: only text sharemail changed is re-encoded)

    /// `text` in the charset `label` names, or nil when the label is unknown or
    /// cannot represent every character. Each call opens its own descriptor: it
    /// runs only for an encoded word whose text was rewritten.
    static func encode(_ text: String, label: String) -> [UInt8]? {
        guard let plan = plan(for: label) else { return nil }
        let utf8 = Array(text.utf8)
        let names: [String]
        switch plan {
        case .utf8: return utf8
        case .ascii: return utf8.allSatisfy { $0 < 0x80 } ? utf8 : nil
        case .latin1: names = ["CP1252", "ISO-8859-1"]
        case .hz, .userDefined: return nil  // no encoder; the caller falls back to UTF-8
        case .iconv(let list): names = list
        }
        if utf8.isEmpty { return [] }
        for name in names {
            let cd = iconv_open(name, "UTF-8")
            guard let cd, Int(bitPattern: cd) != -1 else { continue }
            defer { iconv_close(cd) }
            if let out = convertBytes(utf8, with: cd) { return out }
        }
        return nil
    }

    // MARK: - HZ (RFC 1843); glibc has no HZ converter.

    static func decodeHZ(_ bytes: [UInt8]) -> String? {
        var gb: [UInt8] = []  // re-encoded as EUC-CN, which GB18030 decodes
        gb.reserveCapacity(bytes.count)
        var inGB = false
        var i = 0
        let tilde = UInt8(ascii: "~")
        while i < bytes.count {
            let b = bytes[i]
            if b >= 0x80 { return nil }  // HZ is 7-bit
            if b == tilde, i + 1 < bytes.count {
                let n = bytes[i + 1]
                if !inGB && n == tilde {
                    gb.append(tilde)
                    i += 2
                    continue
                }
                if n == UInt8(ascii: "{") {
                    inGB = true
                    i += 2
                    continue
                }
                if n == UInt8(ascii: "}") {
                    inGB = false
                    i += 2
                    continue
                }
                if !inGB && n == UInt8(ascii: "\n") {
                    i += 2
                    continue
                }
            }
            if inGB {
                guard i + 1 < bytes.count else { return nil }
                let n = bytes[i + 1]
                guard (0x21...0x7E).contains(b), (0x21...0x7E).contains(n) else { return nil }
                gb.append(b | 0x80)
                gb.append(n | 0x80)
                i += 2
            } else {
                gb.append(b)
                i += 1
            }
        }
        return iconvDecode(gb, from: "GB18030")
    }
}

extension String {
    func trimmingASCIIWhitespace() -> String {
        let u = Array(utf8)
        var a = 0, b = u.count
        while a < b, isFWS(u[a]) { a += 1 }
        while b > a, isFWS(u[b - 1]) { b -= 1 }
        if a == 0 && b == u.count { return self }
        return String(decoding: u[a..<b], as: UTF8.self)
    }
}

@inline(__always) func isFWS(_ b: UInt8) -> Bool {
    b == 0x20 || b == 0x09 || b == 0x0D || b == 0x0A
}
