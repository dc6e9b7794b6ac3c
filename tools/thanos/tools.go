//go:build tools

// Package thanos pins the Thanos release that the compatibility tests and benchmarks run as a
// real peer (`make thanos` builds it into bin/thanos): Thanos Query over `meridian ingest` stores,
// Thanos Query over `meridian query`, and Thanos Query beside `meridian query` on the same stores.
// It is a module of its own so that Thanos's whole dependency graph (every cloud SDK) stays out
// of Meridian's build; its replace directives are Thanos's own, which a dependent module must
// repeat for Thanos to build.
package thanos

import _ "github.com/thanos-io/thanos/cmd/thanos"
