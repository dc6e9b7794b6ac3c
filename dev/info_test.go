package dev

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBannerPrintsURLsAndCommandsForTheInvokedBinary(t *testing.T) {
	info := Info{
		QueryURL:         "http://127.0.0.1:9090",
		ConfigFile:       "/tmp/meridian dev/config/meridian.yml",
		DataDir:          "/tmp/meridian dev",
		TemporaryDataDir: true,
		RuleDir:          "/tmp/meridian dev/rules",
		Regions: []RegionInfo{
			{Name: "eu-west-1", RemoteWriteURL: "http://127.0.0.1:40001/api/v1/write", StoreAPI: "127.0.0.1:40003", DirectStoreAPI: "127.0.0.1:40002"},
			{Name: "us-east-1", RemoteWriteURL: "http://127.0.0.1:40011/api/v1/write", StoreAPI: "127.0.0.1:40013", DirectStoreAPI: "127.0.0.1:40012"},
		},
	}
	var b strings.Builder
	require.NoError(t, WriteBanner(&b, info, "./bin/meridian"))
	out := b.String()
	for _, want := range []string{
		"http://127.0.0.1:9090/api/v1/slos",
		"http://127.0.0.1:9090/api/v1/readiness",
		"http://127.0.0.1:9090/readiness/<region>",
		"http://127.0.0.1:9090/dev/regions",
		"http://127.0.0.1:9090/api/v1/alerts",
		"/tmp/meridian dev/rules\n",
		"/tmp/meridian dev (removed on exit)",
		"http://127.0.0.1:40001/api/v1/write",
		"127.0.0.1:40013",
		"curl -s http://127.0.0.1:9090/api/v1/query --data-urlencode 'query=sum by (region) (rate(http_requests_total[5m]))'",
		"./bin/meridian slo status --config '/tmp/meridian dev/config/meridian.yml' --query.url http://127.0.0.1:9090\n",
		"./bin/meridian readiness --config '/tmp/meridian dev/config/meridian.yml' --query.url http://127.0.0.1:9090 --fail eu-west-1\n",
	} {
		require.Contains(t, out, want)
	}
}

func TestDialableAddressOfAListenAddress(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:9090": "127.0.0.1:9090",
		"0.0.0.0:9090":   "localhost:9090",
		"[::]:9090":      "localhost:9090",
		":9090":          "localhost:9090",
	} {
		require.Equal(t, want, dialable(in), in)
	}
}
