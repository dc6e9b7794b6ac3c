//go:build slicelabels

// Package buildtag makes a build without the slicelabels tag fail at compile time.
//
// Thanos's labelpb converts between its protobuf labels and Prometheus's labels.Labels with
// unsafe casts that are only valid when labels.Labels is a slice of Label (the slicelabels
// build). With Prometheus's default string-packed labels the casts corrupt labels or panic
// inside gRPC encoding, at the first query. Every package that touches labelpb imports this
// package, so the mistake shows up when building instead.
package buildtag

// Slicelabels is true in every build that compiles.
const Slicelabels = true
