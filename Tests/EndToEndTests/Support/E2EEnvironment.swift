import Foundation
import PostfixLab
import Testing

/// One Postfix, one smtp-sink and (optionally) one sharemail, shared by all tests of a suite:
/// PostfixLab's `Lab`, plus what only Swift Testing needs.
///
/// Tests get it from the `.e2eEnvironment` suite trait, which starts it before the first test
/// and always stops it after the last one.
typealias E2EEnvironment = Lab

/// Kept for the suites' wording: the lab's one error type.
typealias E2EError = LabError

extension Lab {
    @TaskLocal static var shared: Result<E2EEnvironment, E2EError>?

    /// Where the suites' run directories live. Short on purpose: the milter socket path must
    /// fit in sockaddr_un (108 bytes).
    static let runsRoot = "/tmp/sharemail-e2e"

    /// The environment of the current suite; throws its start-up error (for example
    /// "sharemail binary not found at …") so every test of the suite fails with that reason.
    static func current() throws -> E2EEnvironment {
        guard let shared else {
            throw E2EError("no E2E environment: add `.e2eEnvironment(…)` to the suite's traits")
        }
        return try shared.get()
    }

    // MARK: Assertions with evidence

    /// Every known mailbox holds exactly the given number of messages (missing names: 0).
    func expectMailboxes(_ expected: [String: Int], sourceLocation: SourceLocation = #_sourceLocation) throws {
        var want = Dictionary(uniqueKeysWithValues: PostfixInstance.mailboxes.map { ($0, 0) })
        want.merge(expected) { _, new in new }
        let got = try maildirs.counts()
        #expect(
            got == want, "Maildir copies differ: expected \(sorted(want)), got \(sorted(got))\n\(diagnostics)",
            sourceLocation: sourceLocation)
    }

    func expectSinkCount(_ count: Int, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let messages = try sink.messages()
        #expect(
            messages.count == count,
            "the Internet (smtp-sink) got \(messages.count) messages, expected \(count): \(messages)\n\(diagnostics)",
            sourceLocation: sourceLocation)
    }

    private func sorted(_ counts: [String: Int]) -> String {
        counts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }
}

/// Suite trait: starts one E2E environment before the suite's first test, stops it after the
/// last, even when tests fail or throw.
struct E2EEnvironmentTrait: SuiteTrait, TestScoping {
    let sharemailConfig: String?

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        let started: Result<E2EEnvironment, E2EError>
        do { started = .success(try E2EEnvironment.start(sharemailConfig: sharemailConfig, under: Lab.runsRoot)) } catch {
            started = .failure(error as? E2EError ?? E2EError("\(error)"))
        }
        // Failure messages already quote the logs; E2E_KEEP=1 keeps the whole directory for a
        // closer look (the next run removes it as stale).
        defer {
            if case .success(let environment) = started {
                environment.stop(keepDirectory: ProcessInfo.processInfo.environment["E2E_KEEP"] != nil)
            }
        }
        try await E2EEnvironment.$shared.withValue(started) { try await function() }
    }
}

extension Trait where Self == E2EEnvironmentTrait {
    /// Postfix + smtp-sink + sharemail running `config`.
    static func e2eEnvironment(sharemail config: String = SharemailConfig.standard()) -> Self {
        E2EEnvironmentTrait(sharemailConfig: config)
    }

    /// Postfix + smtp-sink only, no milter: proves the harness itself.
    static var postfixOnly: Self { E2EEnvironmentTrait(sharemailConfig: nil) }
}
