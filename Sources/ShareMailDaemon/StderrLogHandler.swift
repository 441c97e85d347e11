import Glibc
import Logging

/// swift-log to standard error, for `--log stderr` (a terminal, systemd's
/// journal, the tests' log file): `TIMESTAMP LEVEL LABEL: message key=value`,
/// one line per entry, with control characters escaped (`LogText`) as in
/// syslog. swift-log's StreamLogHandler would write a client's line feed
/// through, starting a forged line.
struct StderrLogHandler: LogHandler {
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    let label: String

    init(label: String, level: Logger.Level) {
        self.label = label
        logLevel = level
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let text = LogText.line(event, handlerMetadata: metadata)
        Self.write("\(Self.timestamp()) \(event.level) \(LogText.escaped(label)): \(text)\n")
    }

    /// One write(2) per line, so lines from libmilter's worker threads do not
    /// interleave (the file is opened for appending).
    private static func write(_ line: String) {
        let bytes = Array(line.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { buffer in
                Glibc.write(STDERR_FILENO, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return }  // nowhere to report a failing stderr
            offset += written
        }
    }

    private static func timestamp() -> String {
        var now = time(nil)
        var local = tm()
        localtime_r(&now, &local)
        var buffer = [CChar](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S%z", &local)
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
