package chart

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// apiserverPKI is what a kube-apiserver on loopback needs and what its client presents: a CA,
// a serving certificate for 127.0.0.1 signed by it, a client certificate in system:masters (the
// group that RBAC lets do anything) and the service account token signing key pair. Files are
// PEM, in dir.
type apiserverPKI struct {
	dir                         string
	caCert                      []byte
	clientCert, clientKey       []byte
	servingCertFile, servingKey string
	caFile                      string
	saPublicKey, saSigningKey   string
}

func newAPIServerPKI(t *testing.T, dir string) *apiserverPKI {
	t.Helper()
	p := &apiserverPKI{dir: dir}
	write := func(name string, b []byte) string {
		f := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(f, b, 0o600))
		return f
	}
	now := time.Now()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "meridian-chart-test-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	p.caCert = pemBlock("CERTIFICATE", caDER)
	p.caFile = write("ca.crt", p.caCert)

	issue := func(serial int64, tmpl *x509.Certificate) (certPEM, keyPEM []byte) {
		key := newKey(t)
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		require.NoError(t, err)
		return pemBlock("CERTIFICATE", der), marshalKey(t, key)
	}
	servingCert, servingKey := issue(2, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:    []string{"localhost"},
	})
	p.servingCertFile = write("apiserver.crt", servingCert)
	p.servingKey = write("apiserver.key", servingKey)
	p.clientCert, p.clientKey = issue(3, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "meridian-chart-test", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})

	saKey := newKey(t)
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	require.NoError(t, err)
	p.saPublicKey = write("sa.pub", pemBlock("PUBLIC KEY", saPub))
	p.saSigningKey = write("sa.key", marshalKey(t, saKey))
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

func marshalKey(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	require.NoError(t, err)
	return pemBlock("EC PRIVATE KEY", der)
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
