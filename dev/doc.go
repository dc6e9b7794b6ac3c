// Package dev is `meridian dev`: the whole of Meridian in one process on loopback, for a
// newcomer's first minutes and for manual testing. Three simulated regions each get a real
// ingest node (remote-write receiver, TSDB, StoreAPI) fed by the workload simulator through
// real remote write; a querier reads the three through fault proxies, so that a region taken
// down or slowed by the chaos controls looks to the querier exactly like a real regional outage;
// the SLO engine and failover readiness run on the querier, from the example configuration
// embedded in the binary or from the user's own.
//
// The chaos controls are served on the querier's HTTP server:
//
//	GET  /dev/regions                           state of every region
//	POST /dev/regions/<region>/down             cut the querier off the region's store
//	POST /dev/regions/<region>/up               reconnect it
//	POST /dev/regions/<region>/latency?delay=3s added latency between querier and store
//	POST /dev/regions/<region>/errors?ratio=0.2 share of requests answered with a 5xx
//	POST /dev/regions/<region>/capacity?factor=0.5 allocatable CPU and memory, scaled
package dev
