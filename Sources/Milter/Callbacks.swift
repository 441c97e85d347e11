import CMilter
import CoreMetrics
import Glibc
import Logging

// libmilter's callbacks. They run on libmilter's own worker threads, so they
// are plain nonisolated functions (never in main.swift, whose top level is
// MainActor-isolated), and all per-connection state lives in a
// MilterConnection kept in libmilter's private-data slot. They only
// translate between C and the connection.

// MARK: Private data

private func connection(_ ctx: OpaquePointer?) -> MilterConnection? {
    guard let ctx, let raw = smfi_getpriv(ctx) else { return nil }
    return Unmanaged<MilterConnection>.fromOpaque(raw).takeUnretainedValue()
}

/// Answer for a stage whose connection state is missing (libmilter would not
/// keep it, or a session began without negotiation and its flags are not
/// known): never let a message through unfiltered, and never fall out of
/// step with the MTA. Any step but end of message may have been negotiated
/// without a reply; a tempfail there goes unsent, and libmilter then ignores
/// the rest of the message, so the MTA waits for a reply until it times out.
/// So those steps go on, and end of message, which always has a reply,
/// defers the message.
private func missingState(atEndOfMessage: Bool = false) -> sfsistat {
    countError("no_session")
    guard atEndOfMessage else { return SMFIS_CONTINUE }
    Milter.registration.withLock { $0 }?.logger.error("no connection state for this message: deferring it")
    return SMFIS_TEMPFAIL
}

/// Counts milter-level failures [`Options.errorMetric`{kind}]; rare, so the
/// handle is looked up each time.
private func countError(_ kind: String) {
    guard let label = Milter.registration.withLock({ $0 })?.options.errorMetric else { return }
    Counter(label: label, dimensions: [("kind", kind)]).increment()
}

// MARK: Negotiation

let milterNegotiate:
    @convention(c) (
        OpaquePointer?, UInt, UInt, UInt, UInt,
        UnsafeMutablePointer<UInt>?, UnsafeMutablePointer<UInt>?, UnsafeMutablePointer<UInt>?, UnsafeMutablePointer<UInt>?
    ) -> sfsistat = { ctx, offeredActions, offeredProtocol, _, _, actionsOut, protocolOut, out2, out3 in
        guard let ctx, let registration = Milter.registration.withLock({ $0 }) else { return SMFIS_REJECT }
        let options = registration.options
        let logger = registration.logger

        let wantedActions = options.actions.rawValue | UInt(SMFIF_SETSYMLIST)
        guard offeredActions & wantedActions == wantedActions else {
            // Without these the filter cannot do its job: say so loudly, once
            // per connection, and let milter_default_action decide.
            countError("negotiate")
            logger.error(
                "the MTA does not offer the milter actions \(options.name) needs",
                metadata: [
                    "needed": "\(String(wantedActions, radix: 16))", "offered": "\(String(offeredActions, radix: 16))",
                ])
            return SMFIS_REJECT
        }

        var flags: UInt = 0
        let (steps, replies) = options.negotiated
        for step in Milter.Step.allCases {
            if !steps.contains(step) {
                flags |= step.skipFlag
            } else if !replies.contains(step) {
                flags |= step.noReplyFlag
            }
        }
        // A filter that reads the body may want to stop early with SMFIS_SKIP.
        if steps.contains(.body) { flags |= UInt(SMFIP_SKIP) }
        flags &= offeredProtocol  // ask only for what the MTA can do

        actionsOut?.pointee = wantedActions
        protocolOut?.pointee = flags
        out2?.pointee = 0
        out3?.pointee = 0

        for (stage, names) in options.macros where !names.isEmpty {
            let list = strdup(names.joined(separator: " "))
            defer { free(list) }
            if smfi_setsymlist(ctx, stage.rawValue, list) != MI_SUCCESS {
                logger.warning("the MTA refused the macro list", metadata: ["stage": "\(stage)"])
            }
        }

        Milter.recordNegotiated(flags)
        // A connection's state is made here: after XCLIENT, Postfix reopens the
        // milter session and negotiates again, and connect may never come.
        return beginConnection(ctx, registration: registration, flags: flags) ? SMFIS_CONTINUE : SMFIS_TEMPFAIL
    }

/// Makes fresh connection state for `ctx`, replacing any left over; false
/// when libmilter would not keep it.
private func beginConnection(_ ctx: OpaquePointer, registration: Milter.Registration, flags: UInt) -> Bool {
    releaseConnection(ctx)
    let options = registration.options
    let state = MilterConnection(
        session: registration.makeSession(), gate: Milter.gate, replies: options.failureReplies,
        errorMetric: options.errorMetric, logger: registration.logger)
    state.protocolFlags = flags
    guard smfi_setpriv(ctx, Unmanaged.passRetained(state).toOpaque()) == MI_SUCCESS else {
        Unmanaged.passUnretained(state).release()
        return false
    }
    return true
}

/// The connection state for CONNECT. Usually negotiation made it; but an MTA
/// that ends a session with QUIT_NC (sendmail does) starts the next one on
/// the same socket with CONNECT and no new OPTNEG, after our close released
/// the state. Then it is made here, with the flags negotiation agreed
/// (`Milter.negotiatedFlags` says why those are this context's flags).
private func connectionForConnect(_ ctx: OpaquePointer) -> MilterConnection? {
    if let state = connection(ctx) { return state }
    guard let registration = Milter.registration.withLock({ $0 }) else { return nil }
    guard let flags = Milter.flagsWithoutNegotiation else {
        registration.logger.error("a session began without negotiation, and MTAs with different protocol flags share this socket: its messages are deferred")
        return nil
    }
    return beginConnection(ctx, registration: registration, flags: flags) ? connection(ctx) : nil
}

// MARK: Stages

let milterConnect: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<sockaddr>?) -> sfsistat = {
    ctx, hostname, address in
    guard let ctx, let state = connectionForConnect(ctx) else { return missingState() }
    var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
    var port: Int32 = 0
    let client = buffer.withUnsafeMutableBufferPointer { buf -> ClientAddress? in
        guard let base = buf.baseAddress, cmilter_format_address(address, base, buf.count, &port) == 0 else { return nil }
        return ClientAddress(ip: String(cString: base), port: Int(port))
    }
    let verdict = state.connect(
        hostname: hostname.map { String(cString: $0) } ?? "",
        client: client, context: LibmilterContext(pointer: ctx))
    return answer(verdict, step: .connect, ctx: ctx, state: state)
}

let milterMailFrom: @convention(c) (OpaquePointer?, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> sfsistat = { ctx, argv in
    guard let ctx, let state = connection(ctx) else { return missingState() }
    let verdict = state.mailFrom(arguments(argv), context: LibmilterContext(pointer: ctx))
    return answer(verdict, step: .mail, ctx: ctx, state: state)
}

let milterRecipient: @convention(c) (OpaquePointer?, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> sfsistat = { ctx, argv in
    guard let ctx, let state = connection(ctx) else { return missingState() }
    let verdict = state.recipient(arguments(argv), context: LibmilterContext(pointer: ctx))
    return answer(verdict, step: .recipient, ctx: ctx, state: state)
}

/// DATA: no session stage needs it; taken only on TCP sockets, where its
/// reply keeps the conversation out of a Nagle stall (see `Options.negotiated`).
let milterData: @convention(c) (OpaquePointer?) -> sfsistat = { ctx in
    guard let ctx, let state = connection(ctx) else { return missingState() }
    return answer(.continue, step: .data, ctx: ctx, state: state)
}

let milterHeader: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<CChar>?) -> sfsistat = {
    ctx, name, value in
    guard let ctx, let state = connection(ctx) else { return missingState() }
    let bytes: [UInt8] =
        value.map { pointer in
            Array(UnsafeRawBufferPointer(start: pointer, count: strlen(pointer)).bindMemory(to: UInt8.self))
        } ?? []
    let verdict = state.header(
        name: name.map { String(cString: $0) } ?? "", value: bytes,
        context: LibmilterContext(pointer: ctx))
    return answer(verdict, step: .headers, ctx: ctx, state: state)
}

let milterBody: @convention(c) (OpaquePointer?, UnsafeMutablePointer<UInt8>?, Int) -> sfsistat = { ctx, bytes, length in
    guard let ctx, let state = connection(ctx) else { return missingState() }
    let verdict = state.body(
        UnsafeRawBufferPointer(start: bytes, count: bytes == nil ? 0 : length),
        context: LibmilterContext(pointer: ctx))
    if verdict == .skip {
        // Negotiated without a reply, the MTA sends the rest anyway.
        if state.expectsNoReply(.body) { return SMFIS_NOREPLY }
        // Without SMFIP_SKIP agreed the MTA would not understand it.
        return state.protocolFlags & UInt(SMFIP_SKIP) != 0 ? SMFIS_SKIP : SMFIS_CONTINUE
    }
    return answer(verdict, step: .body, ctx: ctx, state: state)
}

let milterEndOfMessage: @convention(c) (OpaquePointer?) -> sfsistat = { ctx in
    guard let ctx, let state = connection(ctx) else { return missingState(atEndOfMessage: true) }
    let verdict = state.endOfMessage(context: LibmilterContext(pointer: ctx))
    return answer(verdict, step: nil, ctx: ctx, state: state)
}

let milterAbort: @convention(c) (OpaquePointer?) -> sfsistat = { ctx in
    connection(ctx)?.abort()
    return SMFIS_CONTINUE
}

let milterClose: @convention(c) (OpaquePointer?) -> sfsistat = { ctx in
    // Close can come with no private data (before connect, or after an
    // XCLIENT reopened the session): handle that first.
    guard let ctx else { return SMFIS_CONTINUE }
    connection(ctx)?.close()
    releaseConnection(ctx)
    return SMFIS_CONTINUE
}

// MARK: Translation

private func releaseConnection(_ ctx: OpaquePointer) {
    guard let raw = smfi_getpriv(ctx) else { return }
    _ = smfi_setpriv(ctx, nil)
    Unmanaged<MilterConnection>.fromOpaque(raw).release()
}

private func arguments(_ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> [String] {
    guard let argv else { return [] }
    var result: [String] = []
    var index = 0
    while let argument = argv[index] {
        result.append(String(cString: argument))
        index += 1
    }
    return result
}

/// Turns a verdict into libmilter's status, setting the reply text. A step
/// negotiated as "no reply" must answer SMFIS_NOREPLY whatever the verdict,
/// or the MTA and libmilter fall out of step.
private func answer(_ verdict: Verdict, step: Milter.Step?, ctx: OpaquePointer, state: MilterConnection) -> sfsistat {
    if let step, state.expectsNoReply(step) {
        if verdict != .continue {
            state.logger.error(
                "a verdict came at a step negotiated without reply; it is lost",
                metadata: ["step": "\(step)", "verdict": "\(verdict)"])
        }
        return SMFIS_NOREPLY
    }
    switch verdict {
    case .continue, .skip: return SMFIS_CONTINUE
    case .accept: return SMFIS_ACCEPT
    case .discard: return SMFIS_DISCARD
    case .reject(let reply):
        return setReply(reply, digit: 5, ctx: ctx, state: state) ? SMFIS_REJECT : SMFIS_TEMPFAIL
    case .tempfail(let reply):
        _ = setReply(reply, digit: 4, ctx: ctx, state: state)
        return SMFIS_TEMPFAIL
    }
}

/// Sets a reply; false when it could not be set (the caller then tempfails
/// rather than reject with a text nobody chose).
private func setReply(_ reply: Reply, digit: Int, ctx: OpaquePointer, state: MilterConnection) -> Bool {
    guard reply.isValid(forClass: digit) else {
        state.logger.error("invalid SMTP reply code", metadata: ["code": "\(reply.code)", "enhanced": "\(reply.enhancedCode)"])
        return false
    }
    let lines = reply.wireLines
    let code = String(reply.code)
    // libmilter copies the reply into its own buffer: the C strings need
    // only live for the call.
    var cLines = lines.map { strdup($0) }
    defer { cLines.forEach { free($0) } }
    let status: Int32 = code.withCString { cCode in
        reply.enhancedCode.withCString { cEnhanced in
            if cLines.count == 1 {
                return smfi_setreply(
                    ctx, UnsafeMutablePointer(mutating: cCode),
                    UnsafeMutablePointer(mutating: cEnhanced), cLines[0])
            }
            return cLines.withUnsafeMutableBufferPointer { buffer in
                buffer.withMemoryRebound(to: UnsafePointer<CChar>?.self) { lines in
                    cmilter_setmlreply(ctx, cCode, cEnhanced, lines.baseAddress, lines.count)
                }
            }
        }
    }
    if status != MI_SUCCESS {
        state.countError("reply")
        state.logger.error("libmilter refused the reply text", metadata: ["code": "\(code)"])
        return false
    }
    return true
}
