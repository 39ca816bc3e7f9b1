package gateway

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the gateway's Prometheus metrics, on a registry of its own so
// that several gateways (in tests) do not collide.
type metrics struct {
	handler  http.Handler
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	bytesIn  prometheus.Counter
	bytesOut prometheus.Counter
	chunksIn prometheus.Counter
	sse      prometheus.Gauge

	chunksStored    prometheus.Gauge
	underReplicated prometheus.Gauge
	pendingRepair   prometheus.Gauge
	pendingGC       prometheus.Gauge
	nodesAlive      prometheus.Gauge
	nodesTotal      prometheus.Gauge
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dfs_gateway_requests_total", Help: "HTTP requests by method, route and status code.",
		}, []string{"method", "route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dfs_gateway_request_duration_seconds", Help: "HTTP request latency by method and route (event streams: their whole life).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"method", "route"}),
		bytesIn:  prometheus.NewCounter(prometheus.CounterOpts{Name: "dfs_gateway_upload_bytes_total", Help: "File bytes received in uploads."}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{Name: "dfs_gateway_download_bytes_total", Help: "File bytes sent in downloads."}),
		chunksIn: prometheus.NewCounter(prometheus.CounterOpts{Name: "dfs_gateway_chunks_uploaded_total", Help: "New chunks stored by uploads through this gateway."}),
		sse:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "dfs_gateway_event_streams", Help: "Open server-sent event streams."}),

		chunksStored:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "dfs_cluster_chunks_stored", Help: "Chunk copies stored over every datanode."}),
		underReplicated: prometheus.NewGauge(prometheus.GaugeOpts{Name: "dfs_cluster_under_replicated_chunks", Help: "Chunks of committed files with fewer live copies than the replication factor."}),
		pendingRepair:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "dfs_cluster_replication_backlog", Help: "Chunks waiting for a repair copy."}),
		pendingGC:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "dfs_cluster_gc_pending_chunks", Help: "Chunks waiting for garbage collection."}),
		nodesAlive:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "dfs_cluster_nodes_alive", Help: "Datanodes alive."}),
		nodesTotal:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "dfs_cluster_nodes", Help: "Datanodes in the registry."}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.bytesIn, m.bytesOut, m.chunksIn, m.sse,
		m.chunksStored, m.underReplicated, m.pendingRepair, m.pendingGC, m.nodesAlive, m.nodesTotal,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return m
}

func (m *metrics) observe(method, route string, code int, d time.Duration, _ int64) {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete, http.MethodOptions:
	default:
		method = "other"
	}
	m.requests.WithLabelValues(method, route, strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(method, route).Observe(d.Seconds())
}

func (m *metrics) setCluster(ci *ClusterInfo) {
	m.chunksStored.Set(float64(ci.ChunksStored))
	m.nodesAlive.Set(float64(ci.NodesAlive))
	m.nodesTotal.Set(float64(ci.NodesTotal))
	if ci.CountersError == "" {
		m.underReplicated.Set(float64(ci.UnderReplicated))
		m.pendingRepair.Set(float64(ci.PendingRepair))
		m.pendingGC.Set(float64(ci.PendingGC))
	}
}
