package simulate_test

import (
	"context"
	"log"
	"net/http"
	"time"

	"github.com/meridian-obs/meridian/internal/simulate"
)

// A dev environment: every default region pushed to its own ingest store, one region also
// served for scraping, and an error burst in one region.
func Example() {
	ctx := context.Background()
	sim, err := simulate.New(simulate.WithSeed(42), simulate.WithBackfill(6*time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	stores := map[string]string{
		"eu-west-1":      "http://127.0.0.1:19291/api/v1/receive",
		"us-east-1":      "http://127.0.0.1:19292/api/v1/receive",
		"ap-southeast-1": "http://127.0.0.1:19293/api/v1/receive",
	}
	for region, url := range stores {
		go func() { _ = sim.Push(ctx, region, url, simulate.DefaultStep) }()
	}
	exporter, err := sim.Handler("eu-west-1")
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = http.ListenAndServe("127.0.0.1:9100", exporter) }()

	if err := sim.SetErrorRatio("us-east-1", 0.2); err != nil {
		log.Fatal(err)
	}
}

// Remote-write requests for the last hour of one region, e.g. to feed a store directly.
func ExampleSimulator_WriteRequests() {
	sim, err := simulate.New()
	if err != nil {
		log.Fatal(err)
	}
	now := time.Now()
	reqs, err := sim.WriteRequests("ap-southeast-1", now.Add(-time.Hour), now, 15*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	for _, wr := range reqs {
		_ = wr // marshal, snappy-encode and POST, or append to a storage directly
	}
}
