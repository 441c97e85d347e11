// swift-tools-version: 6.1
// sharemail: a shared-mailbox milter for Postfix.
//
// Layers, each knowing only the one below:
//   CMilter (C shim over libmilter) → Milter (Swift milter protocol layer)
//   MailHeaders (RFC 5322/2047 parsing and writing, no mailbox knowledge)
//   ShareMail (pure policy: facts in, decision out; no I/O, no C)
//   ShareMailStore (the conversation memory: SQLite or PostgreSQL)
//   ShareMailDaemon (the daemon: session glue, memory adapter, reload, drain,
//     metrics, doctor's checks, check's report; unit-tested without Postfix)
//   sharemail (the executable: only the command line)
import PackageDescription

let package = Package(
    name: "sharemail",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sharemail", targets: ["sharemail"]),
        .library(name: "ShareMail", targets: ["ShareMail"]),
        .library(name: "MailHeaders", targets: ["MailHeaders"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        .target(
            name: "CMilter",
            linkerSettings: [.linkedLibrary("milter"), .linkedLibrary("pthread")]
        ),
        .target(
            name: "Milter",
            dependencies: [
                "CMilter",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "MailHeaders"
        ),
        .target(
            name: "ShareMail",
            dependencies: [
                "MailHeaders",
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        // Conversation memory: who wrote what, reassignments, the audit trail.
        // SQLite (GRDB) on one host, PostgreSQL (postgres-nio) shared by several.
        .target(
            name: "ShareMailStore",
            dependencies: [
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),  // sqlite3_progress_handler: the deadline
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Everything of `serve` that is not command-line wiring, and what
        // doctor and check report.
        .target(
            name: "ShareMailDaemon",
            dependencies: [
                "CMilter",  // pthread_setname_np for DaemonThread
                "Milter",
                "ShareMail",
                "ShareMailStore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        // The command line only: ArgumentParser commands over ShareMailDaemon.
        .executableTarget(
            name: "sharemail",
            dependencies: [
                "Milter",
                "ShareMail",
                "ShareMailDaemon",
                "ShareMailStore",
                "MailHeaders",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // A private Postfix on loopback, an smtp-sink "Internet", Maildirs,
        // an SMTP client and the sharemail daemon: shared by the end-to-end
        // tests and `sharemail-sandbox`.
        .target(
            name: "PostfixLab"
        ),
        // A throwaway PostgreSQL cluster for the store tests.
        .target(
            name: "PostgresTestSupport",
            dependencies: ["PostfixLab"]
        ),
        // The seed's team as a configuration file, for the unit tests.
        .target(
            name: "SeedTeam"
        ),
        // `scripts/sandbox`: the seed's four cases through a throwaway Postfix.
        .executableTarget(
            name: "sharemail-sandbox",
            dependencies: ["PostfixLab"]
        ),
        // Plain release-build timers: `swift run -c release header-benchmark`.
        .executableTarget(
            name: "header-benchmark",
            dependencies: ["MailHeaders", "ShareMail"],
            path: "Benchmarks/HeaderBenchmark"
        ),
        .testTarget(
            name: "MailHeadersTests",
            dependencies: [
                "MailHeaders",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        .testTarget(
            name: "MilterTests",
            dependencies: ["Milter"]
        ),
        .testTarget(
            name: "ShareMailTests",
            dependencies: ["ShareMail", "MailHeaders", "SeedTeam"]
        ),
        .testTarget(
            name: "ShareMailStoreTests",
            dependencies: ["ShareMailStore", "PostgresTestSupport", "PostfixLab", .product(name: "GRDB", package: "GRDB.swift")]
        ),
        // The daemon without Postfix or root: sessions driven through the
        // milter layer with a fake context and a real SQLite store.
        .testTarget(
            name: "DaemonTests",
            dependencies: [
                "ShareMailDaemon", "Milter", "ShareMail", "ShareMailStore", "SeedTeam",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        // The command line as an admin meets it: golden output, exit codes, JSON.
        .testTarget(
            name: "CLITests",
            dependencies: ["sharemail", "ShareMailStore"],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "EndToEndTests",
            // Depending on the executable makes `swift test` build the very
            // daemon the tests start, never a stale one.
            // MailHeaders: only for test data (the charset label table).
            dependencies: ["sharemail", "PostfixLab", "PostgresTestSupport", "MailHeaders"],
            // miltertest/: Lua scripts that MilterClientTests hands to miltertest.
            exclude: ["README.md", "miltertest"]
        ),
    ]
)
