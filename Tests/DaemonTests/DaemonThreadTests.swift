import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import ShareMailDaemon

@Suite struct DaemonThreadTests {
    /// Every thread carries its name from its first instructions on. Named through
    /// Foundation's `Thread.current.name`, about one in eight came out unnamed (the new
    /// thread can run before `start()` has stored its handle). 10 rounds of 40 threads
    /// caught that in 10 runs of 11; 30 rounds should miss it about once in 300 runs.
    @Test("every daemon thread is named, however fast it starts")
    func everyThreadIsNamed() {
        let names: [StaticString] = [
            "sm-t00", "sm-t01", "sm-t02", "sm-t03", "sm-t04", "sm-t05", "sm-t06", "sm-t07", "sm-t08", "sm-t09",
            "sm-t10", "sm-t11", "sm-t12", "sm-t13", "sm-t14", "sm-t15", "sm-t16", "sm-t17", "sm-t18", "sm-t19",
            "sm-t20", "sm-t21", "sm-t22", "sm-t23", "sm-t24", "sm-t25", "sm-t26", "sm-t27", "sm-t28", "sm-t29",
            "sm-t30", "sm-t31", "sm-t32", "sm-t33", "sm-t34", "sm-t35", "sm-t36", "sm-t37", "sm-t38", "sm-t39",
        ]
        let rounds = 30
        var unnamed: Set<String> = []
        for _ in 0..<rounds {
            unnamed.formUnion(namesMissing(starting: names))
        }
        #expect(unnamed.isEmpty, "unnamed in some of \(rounds) rounds: \(unnamed.sorted())")
    }

    /// Starts a thread for each name, and returns the names no thread of this process
    /// carries once they all run (each counts itself started after the name it sets itself).
    private func namesMissing(starting names: [StaticString]) -> Set<String> {
        let release = ConditionLock(value: 0)
        let started = NIOLockedValueBox(0)
        for name in names {
            DaemonThread.start(name) {
                started.withLockedValue { $0 += 1 }
                release.lock(whenValue: 1)  // alive until the names are read
                release.unlock()
            }
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while started.withLockedValue({ $0 }) < names.count, ContinuousClock.now < deadline {
            Thread.sleep(forTimeInterval: 0.005)
        }
        let expected = Set(names.map { "\($0)" })
        let missing = expected.subtracting(threadNames())
        release.lock()
        release.unlock(withValue: 1)
        // Gone before the next round, or a named thread of this one would hide an unnamed one.
        while !expected.isDisjoint(with: threadNames()), ContinuousClock.now < deadline + .seconds(10) {
            Thread.sleep(forTimeInterval: 0.005)
        }
        return missing
    }
}

/// The names of this process's threads, as the kernel keeps them (`/proc/self/task/*/comm`).
func threadNames() -> [String] {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    return tasks.compactMap { task in
        (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8))?
            .trimmingCharacters(in: .newlines)
    }
}
