// Package dashboards generates Meridian's Grafana dashboards and provisions them.
//
// The dashboards are Grafana JSON models built with typed code (the Grafana Foundation SDK),
// never from JSON strings: a global overview, a per-region detail, the SLOs, failover
// readiness and Meridian's own health. Every panel reads through a `datasource` variable of
// type prometheus and filters by a `region` variable, so that the same JSON works for any
// Prometheus-compatible data source pointing at `meridian query`.
//
// Generate writes them for Grafana's file provisioning (JSON plus the provider YAML) or as
// ConfigMaps for the Grafana sidecar of kube-prometheus-stack. Provisioner creates or updates
// the folder, the data source, the dashboards and, optionally, Grafana-managed alert rules
// through the Grafana HTTP API, idempotently: a second run writes nothing. The HTTP API is
// reached through the Grafana interface, implemented in one file over
// grafana-api-golang-client, so that moving to another client touches that file only.
package dashboards
