import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import Synchronization

/// Serves `GET /metrics` in Prometheus text format. Bind it to loopback or a
/// management network: it has no authentication.
///
/// It shares the process's file descriptors with the milter, so it may never
/// hold many: at most `maximumConnections` at once (more are closed at once,
/// with a warning), and each is closed when no byte arrives for
/// `readTimeout` or when it is older than `idleTimeout`, request or not.
/// A scrape takes milliseconds; a client that stalls loses its connection,
/// and mail never waits for a descriptor.
enum MetricsServer {
    static let maximumConnections = 32
    static let readTimeout: TimeAmount = .seconds(5)
    static let idleTimeout: TimeAmount = .seconds(10)

    static func start(host: String, port: Int, registry: PrometheusCollectorRegistry, logger: Logger) throws -> Channel {
        let connections = ConnectionCount(limit: maximumConnections, logger: logger)
        return try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                // A failed initializer makes the bootstrap close the connection.
                guard connections.enter() else { return channel.eventLoop.makeFailedFuture(ConnectionCount.Full()) }
                channel.closeFuture.whenComplete { _ in connections.leave() }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ConnectionTimeouts(read: readTimeout, idle: idleTimeout))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(MetricsHandler(registry: registry))
                }
            }
            .bind(host: host, port: port)
            .wait()
    }
}

/// The metrics connections open now, against their limit.
private final class ConnectionCount: Sendable {
    struct Full: Error {}

    private let open = Atomic<Int>(0)
    private let lastWarning = Atomic<Int64>(-1)  // seconds since start of the clock, -1: never
    private let limit: Int
    private let logger: Logger
    private let clock = ContinuousClock()
    private let started = ContinuousClock.now

    init(limit: Int, logger: Logger) {
        self.limit = limit
        self.logger = logger
    }

    /// Takes a place; false (and a warning at most once a minute) when all are taken.
    func enter() -> Bool {
        if open.wrappingAdd(1, ordering: .relaxed).newValue <= limit { return true }
        open.wrappingSubtract(1, ordering: .relaxed)
        let now = (clock.now - started).components.seconds
        let last = lastWarning.load(ordering: .relaxed)
        if last < 0 || now - last >= 60, lastWarning.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged {
            logger.warning("metrics: \(limit) connections are open, the most allowed: closing new ones until they finish (mail is not affected)")
        }
        return false
    }

    func leave() {
        open.wrappingSubtract(1, ordering: .relaxed)
    }
}

/// Closes a connection that sends nothing for `read`, and any connection
/// older than `idle`: a slow or stalled client cannot keep its descriptor.
private final class ConnectionTimeouts: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let read: TimeAmount
    private let idle: TimeAmount
    private var readTimer: Scheduled<Void>?
    private var idleTimer: Scheduled<Void>?

    init(read: TimeAmount, idle: TimeAmount) {
        self.read = read
        self.idle = idle
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        armRead(context)
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        stop()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stop()
    }

    private func start(_ context: ChannelHandlerContext) {
        guard idleTimer == nil else { return }
        let channel = context.channel
        idleTimer = context.eventLoop.scheduleTask(in: idle) { channel.close(promise: nil) }
        armRead(context)
    }

    private func armRead(_ context: ChannelHandlerContext) {
        readTimer?.cancel()
        let channel = context.channel
        readTimer = context.eventLoop.scheduleTask(in: read) { channel.close(promise: nil) }
    }

    private func stop() {
        readTimer?.cancel()
        idleTimer?.cancel()
        readTimer = nil
        idleTimer = nil
    }
}

private final class MetricsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let registry: PrometheusCollectorRegistry
    private var head: HTTPRequestHead?

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let request):
            head = request
        case .body:
            break
        case .end:
            guard let request = head else { return }
            head = nil
            let found = request.method == .GET && (request.uri == "/metrics" || request.uri.hasPrefix("/metrics?"))
            let body = found ? registry.emitToBuffer() : Array("not found: try /metrics\n".utf8)
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: found ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain")
            headers.add(name: "Content-Length", value: String(body.count))
            headers.add(name: "Connection", value: "close")
            context.write(
                wrapOutboundOut(
                    .head(
                        HTTPResponseHead(
                            version: request.version, status: found ? .ok : .notFound,
                            headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
