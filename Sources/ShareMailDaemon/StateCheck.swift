import Foundation
import Glibc

/// Can the daemon's user write the conversation memory? A root-owned file
/// (say, created by a command run as root before the unit had a
/// StateDirectory) makes every write fail while mail still flows.
public struct StateCheck {
    let state: String?
    let user: String

    public init(state: String?, user: String) {
        self.state = state
        self.user = user
    }

    public func run() -> Finding {
        guard let state else { return Finding(level: .ok, text: "conversation memory is off (state = \"off\")") }
        guard state.hasPrefix("/") else {
            return Finding(level: .ok, text: "conversation memory in PostgreSQL: doctor does not check the database's permissions")
        }
        guard let entry = getpwnam(user) else {
            return Finding(
                level: .fail, text: "no user \(user) to run sharemail as: it could not write its state \(state)",
                fix: "create it as the README's Install says, or give doctor the daemon's user with --user")
        }
        let uid = entry.pointee.pw_uid
        let groups = Self.groups(of: entry)
        let files = [state, state + "-wal", state + "-shm"].filter { FileManager.default.fileExists(atPath: $0) }
        for file in files where !Self.canWrite(file, uid: uid, groups: groups) {
            return Finding(
                level: .fail,
                text: "\(file) is not writable by \(user), the user sharemail runs as (\(Self.describe(file))): conversation memory cannot record",
                fix: "chown \(user) \(files.joined(separator: " ")) && chmod 0640 \(files.joined(separator: " "))")
        }
        // SQLite creates the database and its -wal and -shm files next to each other.
        var directory = (state as NSString).deletingLastPathComponent
        while !FileManager.default.fileExists(atPath: directory) { directory = (directory as NSString).deletingLastPathComponent }
        let parent = (state as NSString).deletingLastPathComponent
        if directory != parent {
            if parent == "/var/lib/sharemail" {
                return Finding(level: .ok, text: "\(parent) does not exist yet: the unit's StateDirectory=sharemail creates it for \(user) at start")
            }
            if !Self.canWrite(directory, uid: uid, groups: groups) {
                return Finding(
                    level: .fail, text: "\(parent) does not exist and \(user) cannot create it in \(directory) (\(Self.describe(directory)))",
                    fix: "install -d -o \(user) -m 0750 \(parent)")
            }
        } else if !Self.canWrite(directory, uid: uid, groups: groups) {
            return Finding(
                level: .fail,
                text:
                    "\(directory) is not writable by \(user), the user sharemail runs as (\(Self.describe(directory))): SQLite cannot create \(files.isEmpty ? "the database" : "its -wal and -shm files") there",
                fix: "chown \(user) \(directory) (the shipped unit's StateDirectory=sharemail does it for /var/lib/sharemail)")
        }
        return Finding(level: .ok, text: "conversation memory \(state) is writable by \(user), the user sharemail runs as")
    }

    static func groups(of entry: UnsafeMutablePointer<passwd>) -> [gid_t] {
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(entry.pointee.pw_name, entry.pointee.pw_gid, &groups, &count) < 0 {
            groups = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(entry.pointee.pw_name, entry.pointee.pw_gid, &groups, &count)
        }
        return Array(groups.prefix(Int(max(count, 0))))
    }

    /// The permission bits as the kernel reads them for this user (no ACLs).
    static func canWrite(_ path: String, uid: uid_t, groups: [gid_t]) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0 else { return false }
        if uid == 0 { return true }
        if info.st_uid == uid { return info.st_mode & 0o200 != 0 }
        if groups.contains(info.st_gid) { return info.st_mode & 0o020 != 0 }
        return info.st_mode & 0o002 != 0
    }

    static func describe(_ path: String) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else { return "missing" }
        let owner = getpwuid(info.st_uid).map { String(cString: $0.pointee.pw_name) } ?? "\(info.st_uid)"
        let group = getgrgid(info.st_gid).map { String(cString: $0.pointee.gr_name) } ?? "\(info.st_gid)"
        return "owner \(owner):\(group), mode \(String(info.st_mode & 0o777, radix: 8))"
    }
}
