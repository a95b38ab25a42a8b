// Pins the Prometheus Operator release whose published CRDs (ServiceMonitor, PodMonitor,
// PrometheusRule) the chart tests install into the local cluster: hack/fetch-monitoring-crds
// takes them from this module's source through the Go module proxy, verified by go.sum.
module local.invalid/monitoringcrds

go 1.24

require github.com/prometheus-operator/prometheus-operator v0.85.0
