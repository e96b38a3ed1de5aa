package testsrv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// NATSOptions change the server NewNATSWith starts. The zero value is
// NewNATS(false)'s server.
type NATSOptions struct {
	// JetStream enables JetStream with file storage, as NewNATS(true).
	JetStream bool
	// TLS, when set, makes the client port accept TLS connections only
	// (the monitoring port stays plain HTTP).
	TLS *NATSTLS
	// User and Password, when set, are the only credentials the server
	// accepts (authorization { user, password }).
	User, Password string
	// Token, when set, is the only token the server accepts
	// (authorization { token }). It excludes User and Password.
	Token string
}

// NATSTLS is the TLS block of a NATS server.
type NATSTLS struct {
	// CertFile, KeyFile and CAFile are the server certificate, its key and
	// the CA that client certificates must chain to.
	CertFile, KeyFile, CAFile string
	// Verify requires clients to present a certificate signed by the CA.
	Verify bool
}

// NATSTLS returns a TLS block with the PKI's server certificate.
func (p *PKI) NATSTLS(verify bool) *NATSTLS {
	return &NATSTLS{CertFile: p.ServerCertFile, KeyFile: p.ServerKeyFile, CAFile: p.CAFile, Verify: verify}
}

// StartNATSWith is NewNATSWith for a single test: it fails the test with
// tb.Fatal if the server cannot be started and registers Close with
// tb.Cleanup, reporting a failed Close with tb.Error.
func StartNATSWith(tb testing.TB, opts NATSOptions) *NATS {
	tb.Helper()
	n, err := NewNATSWith(opts)
	return forTest(tb, n, err)
}

// writeConfig writes the configuration file the options need, if any.
func (n *NATS) writeConfig() error {
	o := n.opts
	if o.Token != "" && (o.User != "" || o.Password != "") {
		return fmt.Errorf("nats options: Token excludes User and Password")
	}
	var b strings.Builder
	if t := o.TLS; t != nil {
		fmt.Fprintf(&b, "tls {\n  cert_file: %s\n  key_file: %s\n  ca_file: %s\n  verify: %t\n  timeout: 5\n}\n",
			strconv.Quote(t.CertFile), strconv.Quote(t.KeyFile), strconv.Quote(t.CAFile), t.Verify)
	}
	switch {
	case o.Token != "":
		fmt.Fprintf(&b, "authorization {\n  token: %s\n}\n", strconv.Quote(o.Token))
	case o.User != "" || o.Password != "":
		fmt.Fprintf(&b, "authorization {\n  user: %s\n  password: %s\n}\n", strconv.Quote(o.User), strconv.Quote(o.Password))
	}
	if b.Len() == 0 {
		return nil
	}
	n.confPath = filepath.Join(n.dir, "nats.conf")
	if err := os.WriteFile(n.confPath, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write nats config: %w", err)
	}
	return nil
}
