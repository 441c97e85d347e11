import CMilter
import Glibc

/// What a stage may ask of the MTA: the macros it sent, and at end of
/// message the changes to the message. libmilter's context in the daemon
/// (`LibmilterContext`); a test supplies its own macros and collects the
/// changes, as go-milter's `testtrx` and pymilter's `testctx` do.
public protocol MilterContext {
    /// A macro the MTA sent for this or an earlier stage, such as
    /// "{auth_authen}" or "i". Which macros come is set by `Options.macros`.
    func macro(_ name: String) -> String?
    /// Applies one change (end of message only); false when the MTA refused it.
    func apply(_ modification: Modification) -> Bool
}

/// The libmilter context of the stage being called. Valid only during that
/// call: do not keep it.
struct LibmilterContext: MilterContext {
    let pointer: OpaquePointer

    func macro(_ name: String) -> String? {
        name.withCString { cName in
            // libmilter's prototype lacks const; it only reads the name.
            guard let value = smfi_getsymval(pointer, UnsafeMutablePointer(mutating: cName)) else { return nil }
            return String(cString: value)
        }
    }

    func apply(_ modification: Modification) -> Bool {
        if case .changeHeaderBytes(let name, let occurrence, let value) = modification {
            // libmilter copies the value; a NUL-terminated buffer of the bytes as they are.
            var cValue = value.map { CChar(bitPattern: $0) } + [0]
            let a = strdup(name)
            defer { free(a) }
            let status = cValue.withUnsafeMutableBufferPointer { smfi_chgheader(pointer, a, Int32(clamping: occurrence), $0.baseAddress) }
            return status == MI_SUCCESS
        }
        let status: Int32 = Self.withCStrings(modification) { a, b in
            switch modification {
            case .addRecipient: smfi_addrcpt(pointer, a)
            case .deleteRecipient: smfi_delrcpt(pointer, a)
            case .changeSender: smfi_chgfrom(pointer, a, nil)
            case .addHeader: smfi_addheader(pointer, a, b)
            case .insertHeader(let index, _, _): smfi_insheader(pointer, Int32(clamping: index), a, b)
            case .changeHeader(_, let occurrence, _): smfi_chgheader(pointer, a, Int32(clamping: occurrence), b)
            case .changeHeaderBytes: MI_FAILURE  // applied above
            }
        }
        return status == MI_SUCCESS
    }

    /// Calls `body` with mutable C copies of the modification's strings
    /// (libmilter's prototypes take `char *`), freed afterwards.
    private static func withCStrings<R>(
        _ modification: Modification,
        _ body: (UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<CChar>?) -> R
    ) -> R {
        let (first, second): (String?, String?) =
            switch modification {
            case .addRecipient(let address), .deleteRecipient(let address): (address, nil)
            case .changeSender(let address): ("<\(address)>", nil)
            case .addHeader(let name, let value), .insertHeader(_, let name, let value): (name, value)
            case .changeHeader(let name, _, let value): (name, value)
            case .changeHeaderBytes(let name, _, _): (name, nil)
            }
        let a = first.map { strdup($0) } ?? nil
        let b = second.map { strdup($0) } ?? nil
        defer {
            free(a)
            free(b)
        }
        return body(a, b)
    }
}
