// Package chart renders the Meridian Helm chart with Helm's own engine and checks every object it
// renders the way a Kubernetes 1.34 API server would before accepting it: strict decoding into the
// API types (unknown fields and wrong types are errors), validation against the official OpenAPI
// schemas of the release, and, for the Prometheus Operator's ServiceMonitor and PrometheusRule,
// against the CRD schemas with the API server's own CRD validation and pruning code.
//
// It lives in a Go module of its own so that Helm's and Kubernetes's dependency graphs stay out
// of Meridian's build.
package chart
