import Foundation
import Glibc
import PostfixLab
import Testing

/// Issue 11: sharemail installed as the README says, with a `[[mailbox]]` block and nothing
/// more. No `state` key: the memory lives in /var/lib/sharemail/state.sqlite (made for the
/// suite, owned by the daemon's user as the unit's StateDirectory makes it, removed at the
/// end). The daemon runs as user postfix, as the unit's User= runs it, with only
/// `OutOfTheBox.openFiles` descriptors so that running out of them is quick to provoke, and
/// serves metrics on loopback.
enum OutOfTheBox {
    static let metricsPort: UInt16 = (try? freeLoopbackPort()) ?? 29_326
    static let openFiles = 256
}

@Suite(
    "Out of the box: default memory, a state file to trust, metrics that cannot starve the milter", .serialized,
    .memoryEnvironment(.defaultPath(metricsPort: OutOfTheBox.metricsPort, openFiles: OutOfTheBox.openFiles)))
struct OutOfTheBoxTests {
    let env: MemoryEnvironment
    let state = MemoryEnvironment.defaultState
    var files: [String] { [state, state + "-wal", state + "-shm"] }

    init() throws {
        env = try MemoryEnvironment.current()
        try env.beginTest()
    }

    @Test("No state key: a phone's reply to the bare sales@ (In-Reply-To only) reaches Zhangsan, who wrote, and the manager")
    func defaultMemoryRoutesBareReply() throws {
        let config = try String(contentsOfFile: try #require(env.lab.sharemail).configPath, encoding: .utf8)
        #expect(!config.contains("state ="), "this suite must leave state at its default:\n\(config)")
        let talk = Conversation(env)
        let (id, _) = try talk.staffWrites(as: "zhangsan")
        env.nextStep()
        try talk.customerWrites(["In-Reply-To: <\(id)>"])
        try talk.expectDelivered(to: ["manager", "zhangsan"])
        #expect(FileManager.default.fileExists(atPath: state), "the memory should be in \(state)\n\(env.diagnostics)")
    }

    @Test("The database, its WAL and SHM are 0640 and the daemon's user's; assign run as root keeps them so")
    func fileModes() throws {
        let talk = Conversation(env)
        let (id, _) = try talk.staffWrites(as: "zhangsan")  // the daemon has written: all three files exist
        try expectOwnedByDaemon()
        try env.sharemail(["assign", "--thread", id, "--to", "lisi"])  // the test runs as root
        try expectOwnedByDaemon()
    }

    @Test("The state file deleted while sharemail runs, then assign: the next reply follows the assignment")
    func deletedStateFile() throws {
        let talk = Conversation(env)
        let (id, _) = try talk.staffWrites(as: "zhangsan")
        let daemon = try #require(env.lab.sharemail)
        let logStart = daemon.logOffset()
        for file in files { unlink(file) }
        #expect(!FileManager.default.fileExists(atPath: state))
        // The daemon still has the deleted file open; assign (root) makes a new one.
        let said = try env.sharemail(["assign", "--thread", "<\(id)>", "--to", "lisi"])
        #expect(said.contains("lisi@example.com"), "\(said)")
        env.nextStep()
        try talk.customerWrites(["In-Reply-To: <\(id)>"])
        try talk.expectDelivered(to: ["manager", "lisi"])
        #expect(daemon.log(since: logStart).contains("deleted or replaced"), "the reopening should be logged:\n\(env.diagnostics)")
        // The new file is the daemon's, though root made it, and it goes on recording.
        try expectOwnedByDaemon()
        let log = try env.sharemail(["log", "--customer", talk.customer, "--json"])
        let entries = try #require(try JSONSerialization.jsonObject(with: Data(log.utf8)) as? [[String: Any]], "\(log)")
        #expect(entries.first?["rule"] as? String == "assigned", "the assigned reply should be recorded, newest first: \(log)")
    }

    @Test("sharemail log, run first as root where no database is: exit 66, a clear message, no file created")
    func logCreatesNothing() throws {
        let daemon = try #require(env.lab.sharemail)
        let directory = env.lab.directory + "/never-started-" + uniqueTag()
        let path = directory + "/state.sqlite"
        let config = env.lab.directory + "/log-" + uniqueTag() + ".toml"
        try ("state = \"\(path)\"\n" + MemoryEnvironment.configuration(state: nil)).write(toFile: config, atomically: true, encoding: .utf8)
        let result = try Command.run([daemon.binary, "log", "--config", config], timeout: .seconds(20))
        #expect(result.status == 66, "\(result)")
        #expect(result.output.contains("no conversation memory at \(path)"), "\(result)")
        #expect(!FileManager.default.fileExists(atPath: directory), "log created \(directory)")
        for file in [path, path + "-wal", path + "-shm"] {
            #expect(!FileManager.default.fileExists(atPath: file), "log created \(file)")
        }
    }

    @Test("Hundreds of stalled metrics connections, more than the daemon has descriptors: mail is delivered, the stalls are cut off")
    func stalledMetricsDoNotStarveTheMilter() throws {
        let started = env.lab.sharemail?.log(since: 0) ?? ""
        #expect(started.contains("open_files=\(OutOfTheBox.openFiles)"), "the start line should say how many descriptors:\n\(started)")
        let stalls = OutOfTheBox.openFiles + 100  // enough to take every descriptor the daemon has
        var held: [Int32] = []
        defer { for fd in held { close(fd) } }
        let request = Array("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n".utf8)  // never finished
        let deadline = ContinuousClock.now + .seconds(30)
        for _ in 0..<stalls where ContinuousClock.now < deadline {
            // A refused or timed-out connect is the server protecting itself: keep going.
            guard let fd = try? connectLoopback(port: OutOfTheBox.metricsPort, timeoutSeconds: 1) else { continue }
            held.append(fd)
            _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
        #expect(held.count > OutOfTheBox.openFiles / 2, "only \(held.count) connections got through")

        // Mail while every stall is held open: each message accepted and delivered.
        for number in 1...3 {
            let talk = Conversation(env)
            let outcome = try env.lab.sendAndDeliver(
                as: .internet, from: talk.customer, to: ["sales@example.com"],
                message: message(["From: <\(talk.customer)>", "To: sales@example.com", "Subject: during the stall \(number)"]))
            #expect(outcome.accepted, "message \(number) was not accepted while metrics connections stalled:\n\(outcome)\n\(env.diagnostics)")
            try talk.expectDelivered(to: ["manager", "zhangsan", "lisi", "wangwu"])
            env.nextStep()
        }

        // The server cuts every stalled connection off (read timeout 5 s, idle 10 s).
        let cutOff = poll(timeout: .seconds(20)) {
            held.allSatisfy { fd in
                var byte: UInt8 = 0
                return recv(fd, &byte, 1, Int32(MSG_DONTWAIT)) == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)
            }
        }
        #expect(cutOff, "the metrics endpoint kept stalled connections open\n\(env.diagnostics)")
        for fd in held { close(fd) }
        held = []
        // And serves again.
        let fd = try connectLoopback(port: OutOfTheBox.metricsPort, timeoutSeconds: 10)
        defer { close(fd) }
        let get = Array("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        _ = get.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var reply = [UInt8](repeating: 0, count: 64)
        let count = reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        #expect(
            count > 0 && String(decoding: reply[..<max(count, 0)], as: UTF8.self).hasPrefix("HTTP/1.1 200"),
            "GET /metrics after the stall: \(String(decoding: reply[..<max(count, 0)], as: UTF8.self))")
        let log = env.lab.sharemail?.log(since: 0) ?? ""
        #expect(log.contains("connections are open, the most allowed"), "the full endpoint should say so in the log\n\(env.diagnostics)")
    }

    @Test("doctor: the state is writable by the daemon's user (OK); for another user, one FAIL with its fix")
    func doctorChecksTheStateUser() throws {
        let talk = Conversation(env)
        _ = try talk.staffWrites(as: "zhangsan")  // the database exists
        let daemon = try #require(env.lab.sharemail)
        func doctor(user: String) throws -> Command.Result {
            try Command.run(
                [
                    daemon.binary, "doctor", "--config", daemon.configPath, "-c", env.lab.postfix.configDirectory,
                    "--socket", "unix:" + daemon.socketPath, "--user", user,
                ], timeout: .seconds(60))
        }
        let healthy = try doctor(user: MemoryEnvironment.daemonUser)
        #expect(healthy.status == 0, "\(healthy)")
        #expect(healthy.output.contains("OK   conversation memory \(state) is writable by postfix, the user sharemail runs as"), "\(healthy)")
        let wrong = try doctor(user: "nobody")
        #expect(wrong.status == 1, "\(wrong)")
        let failures = wrong.output.split(separator: "\n").filter { $0.hasPrefix("FAIL") }
        #expect(failures.count == 1, "\(wrong)")
        #expect(failures.first?.contains("\(state) is not writable by nobody") == true, "\(wrong)")
        #expect(wrong.output.contains("fix: chown nobody \(state)"), "\(wrong)")

        // Without --user: the unit's User=, a drop-in's winning, as systemd reads them.
        let unit = env.lab.directory + "/sharemail-\(uniqueTag()).service"
        try String(contentsOfFile: LabPaths.packageRoot + "/postfix-conf/sharemail.service", encoding: .utf8)
            .write(toFile: unit, atomically: true, encoding: .utf8)
        func doctor(unit: String) throws -> Command.Result {
            try Command.run(
                [
                    daemon.binary, "doctor", "--config", daemon.configPath, "-c", env.lab.postfix.configDirectory,
                    "--socket", "unix:" + daemon.socketPath, "--unit", unit,
                ], timeout: .seconds(60))
        }
        let shipped = try doctor(unit: unit)  // User=sharemail: no such user here, or not postfix's file's owner
        #expect(shipped.status == 1, "\(shipped)")
        #expect(
            shipped.output.contains("FAIL no user sharemail to run sharemail as")
                || shipped.output.contains("is not writable by sharemail, the user sharemail runs as"), "\(shipped)")
        try FileManager.default.createDirectory(atPath: unit + ".d", withIntermediateDirectories: false)
        try "[Service]\nUser=\(MemoryEnvironment.daemonUser)\n".write(toFile: unit + ".d/user.conf", atomically: true, encoding: .utf8)
        let overridden = try doctor(unit: unit)
        #expect(overridden.status == 0 && overridden.output.contains("is writable by postfix, the user sharemail runs as"), "\(overridden)")
    }

    /// state.sqlite, -wal and -shm: mode 0640, owner the daemon's user (postfix here).
    private func expectOwnedByDaemon(sourceLocation: SourceLocation = #_sourceLocation) throws {
        let user = try #require(getpwnam(MemoryEnvironment.daemonUser))
        for file in files {
            var info = stat()
            guard stat(file, &info) == 0 else {
                Issue.record("\(file) is missing\n\(env.diagnostics)", sourceLocation: sourceLocation)
                continue
            }
            #expect(info.st_mode & 0o777 == 0o640, "\(file): mode \(String(info.st_mode & 0o777, radix: 8))", sourceLocation: sourceLocation)
            #expect(info.st_uid == user.pointee.pw_uid, "\(file): owner uid \(info.st_uid)", sourceLocation: sourceLocation)
        }
    }
}
