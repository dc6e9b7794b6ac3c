package query

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

func TestParseEndpoint(t *testing.T) {
	for _, tc := range []struct {
		in      string
		kind    endpointKind
		host    string
		wantErr string
	}{
		{in: "127.0.0.1:10901", kind: endpointStatic, host: "127.0.0.1"},
		{in: "store.eu.svc:10901", kind: endpointStatic, host: "store.eu.svc"},
		{in: "[::1]:10901", kind: endpointStatic, host: "::1"},
		{in: "dns+store.eu.svc:10901", kind: endpointDNS, host: "store.eu.svc"},
		{in: "dnssrv+_grpc._tcp.store.eu.svc", kind: endpointSRV, host: "_grpc._tcp.store.eu.svc"},
		{in: "store.eu.svc", wantErr: "missing port"},
		{in: "dns+store.eu.svc", wantErr: "missing port"},
		{in: ":10901", wantErr: "missing host"},
		{in: "store:http", wantErr: "invalid port"},
		{in: "dnssrv+", wantErr: "missing SRV name"},
		{in: "consul+store:10901", wantErr: "unknown resolver prefix"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			spec, err := parseEndpoint(tc.in)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.ErrorContains(t, err, tc.in, "the error names the endpoint")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.kind, spec.kind)
			require.Equal(t, tc.host, spec.host)
		})
	}
}

func TestNewStoreSetRejectsBadEndpoint(t *testing.T) {
	_, err := NewStoreSet(nil, nil, StoreSetOptions{Endpoints: []string{"127.0.0.1:10901", "nope"}})
	require.ErrorContains(t, err, `endpoint "nope"`)
}

// staticResolver answers DNS lookups from maps; its answers can change between rounds.
type staticResolver struct {
	mu  sync.Mutex
	ips map[string][]string
	srv map[string][]*net.SRV
}

func (r *staticResolver) set(host string, ips ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ips[host] = ips
}

func (r *staticResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ips, ok := r.ips[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []net.IPAddr
	for _, ip := range ips {
		out = append(out, net.IPAddr{IP: net.ParseIP(ip)})
	}
	return out, nil
}

func (r *staticResolver) LookupSRV(_ context.Context, _, _, name string) (string, []*net.SRV, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	recs, ok := r.srv[name]
	if !ok {
		return "", nil, errors.New("no SRV records")
	}
	return name, recs, nil
}

func TestStoreSetResolvesDNSEndpoints(t *testing.T) {
	eu := startTestStore(t, labels.FromStrings("region", "eu-west-1"), nil)
	us := startTestStore(t, labels.FromStrings("region", "us-east-1"), nil)
	_, euPort, _ := net.SplitHostPort(eu.addr)
	_, usPortStr, _ := net.SplitHostPort(us.addr)
	usPort, _ := strconv.Atoi(usPortStr)

	res := &staticResolver{
		ips: map[string][]string{"store.eu.test": {"127.0.0.1"}, "store.us.test": {"127.0.0.1"}},
		srv: map[string][]*net.SRV{"_grpc._tcp.us.test": {{Target: "store.us.test", Port: uint16(usPort)}}},
	}
	set, err := NewStoreSet(nil, nil, StoreSetOptions{Endpoints: []string{
		"dns+store.eu.test:" + euPort,
		"dnssrv+_grpc._tcp.us.test",
		"dns+store.gone.test:10901",
	}})
	require.NoError(t, err)
	set.disc.resolver = res
	runStoreSet(t, set)

	byAddr := map[string]StoreStatus{}
	for _, st := range set.Stores() {
		byAddr[st.Address] = st
	}
	require.Len(t, byAddr, 3)
	require.True(t, byAddr[eu.addr].Healthy)
	require.True(t, byAddr[us.addr].Healthy)
	gone := byAddr["dns+store.gone.test:10901"]
	require.False(t, gone.Healthy)
	require.Contains(t, gone.LastError, "resolve dns+store.gone.test:10901")

	// The unresolvable endpoint is still accounted for in answers.
	f := NewFanout(nil, nil, set, FanoutOptions{PartialResponse: true})
	_, ws, err := selectAll(t, context.Background(), f, 0, 1, metricM)
	require.NoError(t, err)
	require.Len(t, ws, 1)
	require.Contains(t, ws[0], "store dns+store.gone.test:10901: resolve dns+store.gone.test:10901")

	t.Run("failed re-resolution keeps the previous addresses", func(t *testing.T) {
		res.mu.Lock()
		delete(res.ips, "store.eu.test")
		res.mu.Unlock()
		set.refresh(context.Background(), true, false)
		_, ok := storeByAddr(set, eu.addr)
		require.True(t, ok)
	})

	t.Run("name resolving later replaces its placeholder", func(t *testing.T) {
		res.set("store.gone.test", "127.0.0.2")
		set.refresh(context.Background(), true, false)
		_, ok := storeByAddr(set, "dns+store.gone.test:10901")
		require.False(t, ok)
		_, ok = storeByAddr(set, "127.0.0.2:10901")
		require.True(t, ok)
	})
}
