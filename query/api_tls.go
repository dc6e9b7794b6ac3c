package query

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// ClientTLS configures TLS from the querier to its stores (flags --grpc-client-tls-*).
type ClientTLS struct {
	// Secure turns TLS on. Setting any of the files or ServerName turns it on as well: a CA or a
	// client certificate given without --grpc-client-tls-secure is never silently ignored.
	Secure     bool
	Cert, Key  string // client certificate and key, for mTLS
	CA         string // CA bundle to verify the stores; the system pool when empty
	ServerName string // expected name in the stores' certificates; the dialled host when empty
}

func (c ClientTLS) enabled() bool {
	return c.Secure || c.Cert != "" || c.Key != "" || c.CA != "" || c.ServerName != ""
}

// DialOptions returns the gRPC transport credentials for the store connections.
func (c ClientTLS) DialOptions() ([]grpc.DialOption, error) {
	if !c.enabled() {
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if (c.Cert == "") != (c.Key == "") {
		return nil, fmt.Errorf("grpc client tls: certificate %q and key %q must be given together", c.Cert, c.Key)
	}
	if c.Cert != "" {
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("grpc client tls: load certificate %s: %w", c.Cert, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if c.CA != "" {
		pool, err := loadCertPool(c.CA)
		if err != nil {
			return nil, fmt.Errorf("grpc client tls: %w", err)
		}
		cfg.RootCAs = pool
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}, nil
}

// ServerTLS configures TLS on the querier's own StoreAPI server (flags --grpc-server-tls-*).
type ServerTLS struct {
	Cert, Key string
	ClientCA  string // when set, clients must present a certificate signed by it (mTLS)
}

// ServerOptions returns the gRPC server options; plaintext when no certificate is configured.
func (s ServerTLS) ServerOptions() ([]grpc.ServerOption, error) {
	if s.Cert == "" && s.Key == "" {
		if s.ClientCA != "" {
			return nil, fmt.Errorf("grpc server tls: client CA %s given without a server certificate", s.ClientCA)
		}
		return nil, nil
	}
	if s.Cert == "" || s.Key == "" {
		return nil, fmt.Errorf("grpc server tls: certificate %q and key %q must be given together", s.Cert, s.Key)
	}
	cert, err := tls.LoadX509KeyPair(s.Cert, s.Key)
	if err != nil {
		return nil, fmt.Errorf("grpc server tls: load certificate %s: %w", s.Cert, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if s.ClientCA != "" {
		pool, err := loadCertPool(s.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("grpc server tls: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(cfg))}, nil
}

func loadCertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA %s: %w", file, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("read CA %s: no PEM certificate found", file)
	}
	return pool, nil
}
