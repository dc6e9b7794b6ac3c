package query

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meridian-obs/meridian/internal/testutil"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"

	_ "github.com/meridian-obs/meridian/internal/grpccodec"
	"github.com/meridian-obs/meridian/internal/storeapi"
)

// tlsTestServerName is the DNS name the test server certificates carry besides 127.0.0.1.
const tlsTestServerName = "store.meridian.test"

// tlsTestT0 is the first sample of the series the TLS tests' stores hold.
const tlsTestT0 = int64(1_700_000_000_000)

// startTLSStore serves a TSDB holding up{job="api"} (value 1, 7, 49, ... per region scale)
// over StoreAPI with region as its external label and the gRPC server options of srvTLS.
func startTLSStore(t *testing.T, region string, scale float64, srvTLS ServerTLS) string {
	t.Helper()
	opts := tsdb.DefaultOptions()
	opts.RetentionDuration = 0
	db, err := tsdb.Open(t.TempDir(), nil, nil, opts, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	app := db.Appender(context.Background())
	for i := range int64(5) {
		_, err := app.Append(0, labels.FromStrings("__name__", "up", "job", "api"), tlsTestT0+i*15_000, scale*float64(i+1))
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())

	srv, err := storeapi.NewServer(db, storeapi.Options{
		ExternalLabels: labels.FromStrings("region", region),
		Registerer:     prometheus.NewRegistry(),
	})
	require.NoError(t, err)
	grpcOpts, err := srvTLS.ServerOptions()
	require.NoError(t, err)
	require.Len(t, grpcOpts, 1, "a store with a certificate serves TLS")
	g := grpc.NewServer(grpcOpts...)
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

// startTLSQuerier runs NewServer over endpoints with the given store dial options and HTTP web
// config until the test ends.
func startTLSQuerier(t *testing.T, dial []grpc.DialOption, httpConfig string, endpoints ...string) *Server {
	t.Helper()
	srv, err := NewServer(ServerConfig{
		Registerer: prometheus.NewRegistry(),
		StoreSet: StoreSetOptions{
			Endpoints:     endpoints,
			DialOptions:   dial,
			ProbeInterval: 100 * time.Millisecond,
			ProbeTimeout:  2 * time.Second,
		},
		Fanout:         FanoutOptions{StoreResponseTimeout: 5 * time.Second, PartialResponse: true},
		HTTPAddress:    "127.0.0.1:0",
		HTTPConfigFile: httpConfig,
	})
	require.NoError(t, err)
	runServer(t, srv)
	require.Eventually(t, srv.StoreSet().Ready, 10*time.Second, 10*time.Millisecond)
	return srv
}

// getAPI sends a GET to base+path with client (and basic auth when user is set) and decodes
// Prometheus's envelope when the answer is JSON.
func getAPI(t *testing.T, client *http.Client, base, path string, params url.Values, user, password string) (int, apiResponse) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path+"?"+params.Encode(), nil)
	require.NoError(t, err)
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out apiResponse
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		require.NoError(t, json.Unmarshal(body, &out), "body: %s", body)
	}
	return resp.StatusCode, out
}

// instantUpByRegion runs `up` at the stores' last sample and returns value by region.
func instantUpByRegion(t *testing.T, client *http.Client, base string) (int, apiResponse, map[string]float64) {
	t.Helper()
	params := url.Values{"query": {"up"}, "time": {secondsParam(tlsTestT0 + 60_000)}}
	code, resp := getAPI(t, client, base, "/api/v1/query", params, "", "")
	if resp.Status != "success" {
		return code, resp, nil
	}
	var q queryData[[]vectorSample]
	require.NoError(t, json.Unmarshal(resp.Data, &q))
	out := map[string]float64{}
	for _, s := range q.Result {
		out[s.Metric["region"]] = sampleValue(t, s.Value[1])
	}
	return code, resp, out
}

// storesByAddress reads GET /api/v1/stores.
func storesByAddress(t *testing.T, client *http.Client, base string) map[string]StoreStatus {
	t.Helper()
	code, resp := getAPI(t, client, base, "/api/v1/stores", nil, "", "")
	require.Equal(t, http.StatusOK, code)
	var list []StoreStatus
	require.NoError(t, json.Unmarshal(resp.Data, &list))
	out := map[string]StoreStatus{}
	for _, st := range list {
		out[st.Address] = st
	}
	return out
}

// TestQuerierReachesStoresOverTLSOnlyWithTheRightCredentials runs a querier over two TLS
// stores: eu-west-1 requires a client certificate signed by the CA (mTLS), us-east-1 only
// serves TLS. Each case is a set of --grpc-client-tls-* flags; the stores it cannot reach are
// missing from the answer, named in its warnings (or its error when none is left), and shown
// unhealthy on /api/v1/stores with the TLS failure as their last error.
func TestQuerierReachesStoresOverTLSOnlyWithTheRightCredentials(t *testing.T) {
	pki := testutil.NewPKI(t, "meridian test CA", tlsTestServerName)
	other := testutil.NewPKI(t, "another CA", tlsTestServerName)
	mtlsAddr := startTLSStore(t, "eu-west-1", 1, ServerTLS{Cert: pki.ServerCert, Key: pki.ServerKey, ClientCA: pki.CAFile})
	tlsAddr := startTLSStore(t, "us-east-1", 10, ServerTLS{Cert: pki.ServerCert, Key: pki.ServerKey})
	// The value of up at the query time: the fifth sample, 5 × the region's scale.
	both := map[string]float64{"eu-west-1": 5, "us-east-1": 50}
	// A client certificate is checked by the server after the client has finished its side of a
	// TLS 1.3 handshake: the client sees either the server's alert or, when the server has
	// already reset the connection, a broken pipe on its first write. Both are a refusal.
	const refusedByServer = `tls: (certificate required|bad certificate|unknown certificate authority)|broken pipe|connection reset by peer`
	// The failure reason that dashboards show: tls when the handshake says so, unavailable when
	// the server reset the connection before its alert was read.
	const refusedReason = `^(tls|unavailable)$`

	for _, tc := range []struct {
		name      string
		client    ClientTLS
		want      map[string]float64 // nil: the query fails
		unhealthy map[string]string  // store address -> pattern of its last error
		reasons   map[string]string  // store address -> pattern of its last failure's reason
	}{
		{
			name:   "client certificate and CA reach both stores",
			client: ClientTLS{Cert: pki.ClientCert, Key: pki.ClientKey, CA: pki.CAFile},
			want:   both,
		},
		{
			name:   "server name in the certificate is accepted",
			client: ClientTLS{Cert: pki.ClientCert, Key: pki.ClientKey, CA: pki.CAFile, ServerName: tlsTestServerName},
			want:   both,
		},
		{
			name:      "without a client certificate the mTLS store is missing",
			client:    ClientTLS{CA: pki.CAFile},
			want:      map[string]float64{"us-east-1": 50},
			unhealthy: map[string]string{mtlsAddr: refusedByServer},
			reasons:   map[string]string{mtlsAddr: refusedReason},
		},
		{
			name:      "CA that did not sign the stores' certificates reaches none",
			client:    ClientTLS{Cert: pki.ClientCert, Key: pki.ClientKey, CA: other.CAFile},
			unhealthy: map[string]string{mtlsAddr: "x509: certificate signed by unknown authority", tlsAddr: "x509: certificate signed by unknown authority"},
			reasons:   map[string]string{mtlsAddr: "^tls$", tlsAddr: "^tls$"},
		},
		{
			name:      "client certificate from another CA is refused by the mTLS store",
			client:    ClientTLS{Cert: other.ClientCert, Key: other.ClientKey, CA: pki.CAFile},
			want:      map[string]float64{"us-east-1": 50},
			unhealthy: map[string]string{mtlsAddr: refusedByServer},
			reasons:   map[string]string{mtlsAddr: refusedReason},
		},
		{
			name:      "server name not in the certificate reaches none",
			client:    ClientTLS{Cert: pki.ClientCert, Key: pki.ClientKey, CA: pki.CAFile, ServerName: "other.meridian.test"},
			unhealthy: map[string]string{mtlsAddr: "not other.meridian.test", tlsAddr: "not other.meridian.test"},
			reasons:   map[string]string{mtlsAddr: "^tls$", tlsAddr: "^tls$"},
		},
		{
			name:      "plaintext client reaches none",
			client:    ClientTLS{},
			unhealthy: map[string]string{mtlsAddr: "error reading server preface", tlsAddr: "error reading server preface"},
			reasons:   map[string]string{mtlsAddr: "^unavailable$", tlsAddr: "^unavailable$"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dial, err := tc.client.DialOptions()
			require.NoError(t, err)
			srv := startTLSQuerier(t, dial, "", mtlsAddr, tlsAddr)
			base := "http://" + srv.HTTPAddr()

			// Wait for the probes to settle, then check what /api/v1/stores reports.
			var stores map[string]StoreStatus
			require.Eventually(t, func() bool {
				stores = storesByAddress(t, http.DefaultClient, base)
				for _, addr := range []string{mtlsAddr, tlsAddr} {
					_, down := tc.unhealthy[addr]
					st, ok := stores[addr]
					if !ok || st.Healthy == down || st.LastCheck.IsZero() {
						return false
					}
				}
				return true
			}, 10*time.Second, 20*time.Millisecond, "stores: %+v", stores)
			for addr, reason := range tc.unhealthy {
				require.Regexp(t, reason, stores[addr].LastError, "store %s", addr)
			}
			for addr, reason := range tc.reasons {
				require.Regexp(t, reason, stores[addr].LastFailureReason, "store %s: %s", addr, stores[addr].LastError)
			}
			if tc.unhealthy == nil {
				for addr, st := range stores {
					require.Empty(t, st.LastFailureReason, "store %s never failed", addr)
				}
			}

			code, resp, got := instantUpByRegion(t, http.DefaultClient, base)
			if tc.want == nil {
				require.Equal(t, "error", resp.Status, "no store reachable is never an empty success")
				require.NotEqual(t, http.StatusOK, code)
				for addr := range tc.unhealthy {
					require.Contains(t, resp.Error, addr)
				}
				return
			}
			require.Equal(t, http.StatusOK, code, "error: %s", resp.Error)
			require.Equal(t, tc.want, got)
			require.Len(t, resp.Warnings, len(tc.unhealthy), "warnings: %v", resp.Warnings)
			for addr := range tc.unhealthy {
				require.True(t, slices.ContainsFunc(resp.Warnings, func(w string) bool { return strings.Contains(w, addr) }),
					"no warning names store %s: %v", addr, resp.Warnings)
			}
		})
	}
}

func TestClientAndServerTLSOptionsRejectIncompleteOrUnreadableFiles(t *testing.T) {
	pki := testutil.NewPKI(t, "meridian test CA", tlsTestServerName)
	notPEM := filepath.Join(t.TempDir(), "not-a-ca.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600))
	missing := filepath.Join(t.TempDir(), "missing.pem")

	for _, tc := range []struct {
		name    string
		client  *ClientTLS
		server  *ServerTLS
		wantErr []string
	}{
		{name: "client certificate without key", client: &ClientTLS{Cert: pki.ClientCert}, wantErr: []string{"must be given together", pki.ClientCert}},
		{name: "client key without certificate", client: &ClientTLS{Key: pki.ClientKey}, wantErr: []string{"must be given together", pki.ClientKey}},
		{name: "client certificate file missing", client: &ClientTLS{Cert: missing, Key: pki.ClientKey}, wantErr: []string{"load certificate", missing}},
		{name: "client CA file missing", client: &ClientTLS{CA: missing}, wantErr: []string{"read CA", missing}},
		{name: "client CA file without PEM", client: &ClientTLS{CA: notPEM}, wantErr: []string{"no PEM certificate found", notPEM}},
		{name: "server client CA without certificate", server: &ServerTLS{ClientCA: pki.CAFile}, wantErr: []string{"without a server certificate", pki.CAFile}},
		{name: "server certificate without key", server: &ServerTLS{Cert: pki.ServerCert}, wantErr: []string{"must be given together"}},
		{name: "server key not matching certificate", server: &ServerTLS{Cert: pki.ServerCert, Key: pki.ClientKey}, wantErr: []string{"load certificate", pki.ServerCert}},
		{name: "server client CA without PEM", server: &ServerTLS{Cert: pki.ServerCert, Key: pki.ServerKey, ClientCA: notPEM}, wantErr: []string{"no PEM certificate found", notPEM}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.client != nil {
				_, err = tc.client.DialOptions()
			} else {
				_, err = tc.server.ServerOptions()
			}
			require.Error(t, err)
			for _, s := range tc.wantErr {
				require.Contains(t, err.Error(), s)
			}
		})
	}
}

// writeWebConfig writes an exporter-toolkit web configuration and returns its path.
func writeWebConfig(t *testing.T, content string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "web.yml")
	require.NoError(t, os.WriteFile(file, []byte(content), 0o600))
	return file
}

// TestHTTPAPIServesTLSAndBasicAuthFromTheWebConfigFile serves the querier's HTTP API with a web
// configuration of TLS and one basic-auth user, the way --http.config does, over a plaintext
// store.
func TestHTTPAPIServesTLSAndBasicAuthFromTheWebConfigFile(t *testing.T) {
	pki := testutil.NewPKI(t, "meridian test CA", tlsTestServerName)
	store := startTestStore(t, labels.FromStrings("region", "eu-west-1"), nil)
	appendFloats(t, store.db, tlsTestT0, tlsTestT0+60_000, 15_000, labels.FromStrings("__name__", "up", "job", "api"))

	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	require.NoError(t, err)
	webConfig := writeWebConfig(t, "tls_server_config:\n  cert_file: "+pki.ServerCert+"\n  key_file: "+pki.ServerKey+
		"\nbasic_auth_users:\n  admin: "+string(hash)+"\n")
	srv := startTLSQuerier(t, nil, webConfig, store.addr)
	httpsURL := "https://" + srv.HTTPAddr()
	trusting := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Pool, MinVersion: tls.VersionTLS12}}}
	query := url.Values{"query": {"up"}, "time": {secondsParam(tlsTestT0 + 60_000)}}

	for _, tc := range []struct {
		name, user, password string
		wantCode             int
	}{
		{name: "right password answers the query", user: "admin", password: "s3cret", wantCode: http.StatusOK},
		{name: "wrong password is refused", user: "admin", password: "wrong", wantCode: http.StatusUnauthorized},
		{name: "unknown user is refused", user: "root", password: "s3cret", wantCode: http.StatusUnauthorized},
		{name: "no credentials are refused", wantCode: http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, resp := getAPI(t, trusting, httpsURL, "/api/v1/query", query, tc.user, tc.password)
			require.Equal(t, tc.wantCode, code)
			if tc.wantCode != http.StatusOK {
				require.Empty(t, resp.Status, "a refused request gets no API answer")
				return
			}
			require.Equal(t, "success", resp.Status)
			var q queryData[[]vectorSample]
			require.NoError(t, json.Unmarshal(resp.Data, &q))
			require.Len(t, q.Result, 1)
			require.Equal(t, map[string]string{"__name__": "up", "job": "api", "region": "eu-west-1"}, q.Result[0].Metric)
			require.Equal(t, float64(tlsTestT0+60_000), sampleValue(t, q.Result[0].Value[1]))
		})
	}

	t.Run("client not trusting the certificate fails the handshake", func(t *testing.T) {
		untrusting := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}}}
		_, err := untrusting.Get(httpsURL + "/api/v1/query?" + query.Encode())
		require.ErrorContains(t, err, "x509")
	})
	t.Run("plain HTTP to the HTTPS port gets no API answer", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodGet, "http://"+srv.HTTPAddr()+"/api/v1/query?"+query.Encode(), nil)
		require.NoError(t, err)
		req.SetBasicAuth("admin", "s3cret")
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return // the connection was closed: refused
		}
		defer resp.Body.Close()
		// Go's TLS server answers a plaintext HTTP request with 400 and closes the connection.
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	})
}

// TestHTTPAPIRequiresAClientCertificateWhenTheWebConfigNamesAClientCA serves the HTTP API with
// mTLS (client_ca_file, RequireAndVerifyClientCert).
func TestHTTPAPIRequiresAClientCertificateWhenTheWebConfigNamesAClientCA(t *testing.T) {
	pki := testutil.NewPKI(t, "meridian test CA", tlsTestServerName)
	store := startTestStore(t, labels.FromStrings("region", "eu-west-1"), nil)
	webConfig := writeWebConfig(t, "tls_server_config:\n  cert_file: "+pki.ServerCert+"\n  key_file: "+pki.ServerKey+
		"\n  client_ca_file: "+pki.CAFile+"\n  client_auth_type: RequireAndVerifyClientCert\n")
	srv := startTLSQuerier(t, nil, webConfig, store.addr)
	base := "https://" + srv.HTTPAddr()

	withCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pki.Pool, Certificates: []tls.Certificate{pki.Client}, MinVersion: tls.VersionTLS12,
	}}}
	stores := storesByAddress(t, withCert, base)
	require.Contains(t, stores, store.addr)

	withoutCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Pool, MinVersion: tls.VersionTLS12}}}
	_, err := withoutCert.Get(base + "/api/v1/stores")
	require.ErrorContains(t, err, "tls: certificate required")
}

func TestInvalidWebConfigFailsNewServerNamingTheFile(t *testing.T) {
	pki := testutil.NewPKI(t, "meridian test CA", tlsTestServerName)
	missing := filepath.Join(t.TempDir(), "missing.yml")
	for _, tc := range []struct {
		name    string
		file    string
		wantErr string
	}{
		{name: "file does not exist", file: missing, wantErr: "no such file"},
		{name: "unknown field", file: writeWebConfig(t, "tls_server_cnofig:\n  cert_file: x\n"), wantErr: "tls_server_cnofig"},
		{name: "not YAML", file: writeWebConfig(t, "tls_server_config: [\n"), wantErr: "yaml"},
		{name: "certificate file missing", file: writeWebConfig(t, "tls_server_config:\n  cert_file: "+missing+"\n  key_file: "+pki.ServerKey+"\n"), wantErr: "cert_file"},
		{name: "key without certificate", file: writeWebConfig(t, "tls_server_config:\n  key_file: "+pki.ServerKey+"\n"), wantErr: "missing one of cert or cert_file"},
		{name: "key not matching the certificate", file: writeWebConfig(t, "tls_server_config:\n  cert_file: "+pki.ServerCert+"\n  key_file: "+pki.ClientKey+"\n"), wantErr: "X509KeyPair"},
		{name: "password not a bcrypt hash", file: writeWebConfig(t, "basic_auth_users:\n  admin: s3cret\n"), wantErr: "hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewServer(ServerConfig{
				StoreSet:       StoreSetOptions{Endpoints: []string{"127.0.0.1:1"}},
				HTTPAddress:    "127.0.0.1:0",
				HTTPConfigFile: tc.file,
			})
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.file)
			require.Contains(t, err.Error(), tc.wantErr)
		})
	}
}
