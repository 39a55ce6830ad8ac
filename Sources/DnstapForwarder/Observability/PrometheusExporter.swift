import Metrics
import NIOCore
import Prometheus

/// The service's Prometheus registry: counters are kept live through swift-metrics (each part is
/// built with `metricsFactory`); gauges of current state are read when scraped.
public final class PrometheusExporter: Sendable {
    public let registry: PrometheusCollectorRegistry
    public let metricsFactory: PrometheusMetricsFactory
    private let gauges = Locked<[ScrapedGauge]>([])

    private struct ScrapedGauge {
        let gauge: Metrics.Gauge
        let read: @Sendable () -> Double
    }

    public init() {
        registry = PrometheusCollectorRegistry()
        metricsFactory = PrometheusMetricsFactory(registry: registry)
    }

    /// A gauge whose value is read from `read` at every scrape.
    public func addGauge(_ label: String, dimensions: [(String, String)] = [], read: @escaping @Sendable () -> Int) {
        let gauge = Metrics.Gauge(label: label, dimensions: dimensions, factory: metricsFactory)
        gauges.withLock { $0.append(ScrapedGauge(gauge: gauge, read: { Double(read()) })) }
    }

    /// A gauge with a fractional value (seconds), read at every scrape.
    public func addGauge(_ label: String, dimensions: [(String, String)] = [], seconds read: @escaping @Sendable () -> Double) {
        let gauge = Metrics.Gauge(label: label, dimensions: dimensions, factory: metricsFactory)
        gauges.withLock { $0.append(ScrapedGauge(gauge: gauge, read: read)) }
    }

    /// The Prometheus text exposition (format 0.0.4).
    public func render() -> ByteBuffer {
        for scraped in gauges.withLock({ $0 }) { scraped.gauge.record(scraped.read()) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(8192)
        registry.emit(into: &bytes)
        return ByteBuffer(bytes: bytes)
    }
}
