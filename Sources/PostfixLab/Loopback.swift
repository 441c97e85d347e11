// TCP on 127.0.0.1, where every test's traffic stays.
import Glibc

/// Calls `body` with 127.0.0.1:`port` as a `sockaddr` and its length, for
/// bind(2) or connect(2).
package func withLoopbackAddress<R>(port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
}

/// A TCP connection to 127.0.0.1:`port` whose reads and writes give up after
/// `timeoutSeconds`; the caller closes the descriptor.
package func connectLoopback(port: UInt16, timeoutSeconds: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw LabError("socket() failed: \(String(cString: strerror(errno)))") }
    var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    guard withLoopbackAddress(port: port, { connect(fd, $0, $1) }) == 0 else {
        let reason = String(cString: strerror(errno))
        close(fd)
        throw LabError("cannot connect to 127.0.0.1:\(port): \(reason)")
    }
    return fd
}

/// A plain HTTP/1.1 GET of `path` on 127.0.0.1:`port` (the metrics endpoint):
/// the whole response, status line and headers included, read until the
/// server closes.
package func httpGet(port: UInt16, path: String, timeoutSeconds: Int = 10) throws -> String {
    let fd = try connectLoopback(port: port, timeoutSeconds: timeoutSeconds)
    defer { close(fd) }
    let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
    guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else {
        throw LabError("cannot send the request: \(String(cString: strerror(errno)))")
    }
    var response: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while true {
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count == 0 { break }
        guard count > 0 else { throw LabError("reading the response: \(String(cString: strerror(errno)))") }
        response += chunk[..<count]
    }
    return String(decoding: response, as: UTF8.self)
}
