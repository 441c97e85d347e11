import Foundation

/// Starts one of the daemon's own threads under a name that `top -H`,
/// `ps -L` and perf show, so an admin can tell the memory's writer from
/// libmilter's workers.
///
/// Linux keeps at most 15 bytes of a thread's name and refuses a longer one
/// outright (pthread_setname_np, under Foundation's `Thread.name`, returns
/// ERANGE): "sharemail-record" left every thread named "sharemail".
enum DaemonThread {
    private static let maximumNameLength = 15

    static func start(_ name: StaticString, _ body: @escaping @Sendable () -> Void) {
        precondition(name.utf8CodeUnitCount <= maximumNameLength, "thread name \(name) is longer than Linux keeps")
        let thread = Thread {
            Thread.current.name = "\(name)"
            body()
        }
        thread.start()
    }
}
