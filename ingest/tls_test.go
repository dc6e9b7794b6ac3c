package ingest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/thanos-io/thanos/pkg/info/infopb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// testPKI is a CA with one server certificate for 127.0.0.1 and one client certificate, all
// written as PEM files in a temporary directory.
type testPKI struct {
	caFile, serverCert, serverKey, clientCert, clientKey string
	pool                                                 *x509.CertPool
	client                                               tls.Certificate
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "meridian test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)

	issue := func(name string, serial int64, usage x509.ExtKeyUsage) (certFile, keyFile string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		require.NoError(t, err)
		keyDER, err := x509.MarshalECPrivateKey(key)
		require.NoError(t, err)
		certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
		require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
		return certFile, keyFile
	}
	p := testPKI{caFile: filepath.Join(dir, "ca.crt"), pool: x509.NewCertPool()}
	require.NoError(t, os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600))
	p.pool.AddCert(caCert)
	p.serverCert, p.serverKey = issue("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = issue("client", 3, x509.ExtKeyUsageClientAuth)
	p.client, err = tls.LoadX509KeyPair(p.clientCert, p.clientKey)
	require.NoError(t, err)
	return p
}

func TestTLSStoreAPIRequiresAClientCertificateAndRemoteWriteWorksOverHTTPS(t *testing.T) {
	pki := newTestPKI(t)
	webConfig := filepath.Join(t.TempDir(), "web.yml")
	require.NoError(t, os.WriteFile(webConfig, []byte("tls_server_config:\n  cert_file: "+pki.serverCert+"\n  key_file: "+pki.serverKey+"\n"), 0o600))
	cfg := testConfig(t)
	cfg.HTTPConfigFile = webConfig
	cfg.GRPCTLS = GRPCTLSConfig{CertFile: pki.serverCert, KeyFile: pki.serverKey, ClientCAFile: pki.caFile}
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
		resp, err := info(t, &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}, MinVersion: tls.VersionTLS12})
		require.NoError(t, err)
		require.Len(t, resp.LabelSets, 1)
		require.Equal(t, "region", resp.LabelSets[0].Labels[0].Name)
		require.Equal(t, "eu-west-1", resp.LabelSets[0].Labels[0].Value)
	})
	t.Run("client without a certificate is refused", func(t *testing.T) {
		_, err := info(t, &tls.Config{RootCAs: pki.pool, MinVersion: tls.VersionTLS12})
		require.Error(t, err)
	})
	t.Run("remote write over HTTPS", func(t *testing.T) {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool, MinVersion: tls.VersionTLS12}}}
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
