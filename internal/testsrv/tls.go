package testsrv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a throwaway certificate authority with one server certificate and
// one client certificate it signed, as PEM files in a directory. The server
// certificate is valid for the IP address 127.0.0.1 and the DNS name
// localhost (server and client authentication, so a server may also present
// it to its peers); the client certificate has the common name
// ClientCommonName (client authentication only). Keys are ECDSA P-256 in
// PKCS #8 form, which OpenSSL (PostgreSQL, Redis) and Go read alike.
// Certificates are valid from an hour ago for a day.
type PKI struct {
	// Dir holds the files below.
	Dir string
	// CAFile is the CA certificate; ServerCertFile and ServerKeyFile the
	// server's; ClientCertFile and ClientKeyFile the client's.
	CAFile, ServerCertFile, ServerKeyFile, ClientCertFile, ClientKeyFile string
	// The same certificates and keys as PEM.
	CAPEM, ServerCertPEM, ServerKeyPEM, ClientCertPEM, ClientKeyPEM []byte

	caPool     *x509.CertPool
	clientCert tls.Certificate
}

// ClientCommonName is the common name (CN) of the PKI's client certificate.
const ClientCommonName = "invalidator-test-client"

// NewPKI generates a CA, a server certificate and a client certificate and
// writes them to dir (created if missing) with mode 0600 for keys and 0644
// for certificates.
func NewPKI(dir string) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create pki dir: %w", err)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "invalidator test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}

	leaf := func(serial int64, tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, fmt.Errorf("generate key: %w", err)
		}
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.BasicConstraintsValid = true
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, fmt.Errorf("create certificate %q: %w", tmpl.Subject.CommonName, err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, nil, fmt.Errorf("marshal key: %w", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
	}
	p := &PKI{Dir: dir, CAPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})}
	p.ServerCertPEM, p.ServerKeyPEM, err = leaf(2, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, err
	}
	p.ClientCertPEM, p.ClientKeyPEM, err = leaf(3, &x509.Certificate{
		Subject:     pkix.Name{CommonName: ClientCommonName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, err
	}

	files := []struct {
		path *string
		name string
		data []byte
		mode os.FileMode
	}{
		{&p.CAFile, "ca.crt", p.CAPEM, 0o644},
		{&p.ServerCertFile, "server.crt", p.ServerCertPEM, 0o644},
		{&p.ServerKeyFile, "server.key", p.ServerKeyPEM, 0o600},
		{&p.ClientCertFile, "client.crt", p.ClientCertPEM, 0o644},
		{&p.ClientKeyFile, "client.key", p.ClientKeyPEM, 0o600},
	}
	for _, f := range files {
		*f.path = filepath.Join(dir, f.name)
		if err := os.WriteFile(*f.path, f.data, f.mode); err != nil {
			return nil, fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	p.caPool = x509.NewCertPool()
	p.caPool.AddCert(ca)
	if p.clientCert, err = tls.X509KeyPair(p.ClientCertPEM, p.ClientKeyPEM); err != nil {
		return nil, fmt.Errorf("load client key pair: %w", err)
	}
	return p, nil
}

// StartPKI is NewPKI in a fresh tb.TempDir; it fails the test on error.
func StartPKI(tb testing.TB) *PKI {
	tb.Helper()
	p, err := NewPKI(tb.TempDir())
	if err != nil {
		tb.Fatalf("testsrv: %v", err)
	}
	return p
}

// ClientTLS returns a client configuration that trusts the CA and presents
// the client certificate.
func (p *PKI) ClientTLS() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: p.caPool, Certificates: []tls.Certificate{p.clientCert}}
}

// ClientTLSNoCert returns a client configuration that trusts the CA but
// presents no certificate.
func (p *PKI) ClientTLSNoCert() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: p.caPool}
}
