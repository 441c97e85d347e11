// Swift Testing's side of the private PostgreSQL cluster (PostgresTestSupport's
// `PostgresCluster`): one cluster per suite, through a trait.
import PostgresTestSupport
import Testing

/// Starts one private cluster around a suite and stops it after. If PostgreSQL cannot be
/// started, the PostgreSQL cases fail with the reason (`PostgresCluster.shared()`), never skip.
struct PostgresClusterTrait: SuiteTrait, TestScoping {
    var isRecursive: Bool { false }

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        let cluster = Result { try PostgresCluster.start() }
        defer { try? cluster.get().stop() }
        try await PostgresCluster.$current.withValue(cluster) {
            try await function()
        }
    }
}

extension Trait where Self == PostgresClusterTrait {
    static var postgresCluster: Self { .init() }
}

extension PostgresCluster {
    @TaskLocal static var current: Result<PostgresCluster, any Error>?

    /// The suite's cluster, or the reason it could not start.
    static func shared() throws -> PostgresCluster {
        guard let current else { throw ClusterError("no PostgreSQL cluster: the suite lacks the .postgresCluster trait") }
        do {
            return try current.get()
        } catch {
            throw ClusterError("PostgreSQL cluster did not start: \(error)")
        }
    }
}
