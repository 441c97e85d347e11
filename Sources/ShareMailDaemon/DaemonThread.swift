import CMilter
import Foundation

/// Starts one of the daemon's own threads under a name that `top -H`,
/// `ps -L` and perf show, so an admin can tell the memory's writer from
/// libmilter's workers.
///
/// Linux keeps at most 15 bytes of a thread's name and refuses a longer one
/// outright (pthread_setname_np returns ERANGE): "sharemail-record" left
/// every thread named "sharemail".
///
/// The new thread names itself, through pthread_setname_np, before the body
/// runs. Foundation cannot do it reliably here: `Thread.current.name` set in
/// the body reaches the kernel only once `start()` has stored the new
/// thread's handle, which the new thread can outrun (about one daemon in
/// eight started with its writer unnamed, and bench/run read 0 µs for it),
/// and a name given before `start()` never reaches it at all.
enum DaemonThread {
    private static let maximumNameLength = 15

    static func start(_ name: StaticString, _ body: @escaping @Sendable () -> Void) {
        precondition(name.utf8CodeUnitCount <= maximumNameLength, "thread name \(name) is longer than Linux keeps")
        let thread = Thread {
            // Only a name's length can fail, which the precondition rules out.
            _ = "\(name)".withCString { cmilter_name_thread($0) }
            body()
        }
        thread.start()
    }
}
