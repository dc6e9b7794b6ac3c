package ingest

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meridian-obs/meridian/internal/testutil"

	"github.com/stretchr/testify/require"
	"github.com/thanos-io/thanos/pkg/info/infopb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

func TestTLSStoreAPIRequiresAClientCertificateAndRemoteWriteWorksOverHTTPS(t *testing.T) {
	pki := testutil.NewPKI(t, "meridian test CA")
	webConfig := filepath.Join(t.TempDir(), "web.yml")
	require.NoError(t, os.WriteFile(webConfig, []byte("tls_server_config:\n  cert_file: "+pki.ServerCert+"\n  key_file: "+pki.ServerKey+"\n"), 0o600))
	cfg := testConfig(t)
	cfg.HTTPConfigFile = webConfig
	cfg.GRPCTLS = GRPCTLSConfig{CertFile: pki.ServerCert, KeyFile: pki.ServerKey, ClientCAFile: pki.CAFile}
	n := startNode(t, cfg)

	info := func(t *testing.T, tlsCfg *tls.Config) (*infopb.InfoResponse, error) {
		conn, err := grpc.NewClient(n.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
		require.NoError(t, err)
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return infopb.NewInfoClient(conn).Info(ctx, &infopb.InfoRequest{})
	}
	t.Run("mTLS client with a certificate signed by the CA", func(t *testing.T) {
		resp, err := info(t, &tls.Config{RootCAs: pki.Pool, Certificates: []tls.Certificate{pki.Client}, MinVersion: tls.VersionTLS12})
		require.NoError(t, err)
		require.Len(t, resp.LabelSets, 1)
		require.Equal(t, "region", resp.LabelSets[0].Labels[0].Name)
		require.Equal(t, "eu-west-1", resp.LabelSets[0].Labels[0].Value)
	})
	t.Run("client without a certificate is refused", func(t *testing.T) {
		_, err := info(t, &tls.Config{RootCAs: pki.Pool, MinVersion: tls.VersionTLS12})
		require.Error(t, err)
	})
	t.Run("remote write over HTTPS", func(t *testing.T) {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Pool, MinVersion: tls.VersionTLS12}}}
		req, err := http.NewRequest(http.MethodPost, "https://"+n.HTTPAddr()+"/api/v1/write",
			bytes.NewReader(rw1(t, series{labels: lbls("__name__", "over_tls"), samples: samplesAt(time.Now().UnixMilli(), 2, 1)})))
		require.NoError(t, err)
		req.Header.Set("Content-Type", rw1ContentType)
		req.Header.Set("Content-Encoding", "snappy")
		resp, err := client.Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusNoContent, resp.StatusCode)
		require.Len(t, stored(t, n), 1)
	})
	t.Run("plain HTTP to the HTTPS port fails", func(t *testing.T) {
		resp, err := http.Get("http://" + n.HTTPAddr() + "/-/ready")
		if err == nil {
			defer resp.Body.Close()
			require.Equal(t, http.StatusBadRequest, resp.StatusCode)
		}
	})
}
