// Package validate holds the tests of the deployment artefacts in deploy/
// and the repository's Dockerfile: Kubernetes manifests decoded strictly
// into the real API types, the systemd unit checked by systemd-analyze,
// the Prometheus alerts and the Grafana dashboard checked for valid PromQL
// over the daemon's own metric names.
//
// It is a separate module so that the daemon's module takes no Kubernetes
// or Prometheus-server dependencies. Run it with
//
//	cd deploy/validate && go test ./...
package validate
