package testsrv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
)

func TestPKI(t *testing.T) {
	p := StartPKI(t)
	parse := func(b []byte) *x509.Certificate {
		t.Helper()
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatal("no PEM block")
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	roots := x509.NewCertPool()
	roots.AddCert(parse(p.CAPEM))
	server := parse(p.ServerCertPEM)
	for _, name := range []string{"127.0.0.1", "localhost"} {
		if _, err := server.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
			t.Errorf("server certificate for %s: %v", name, err)
		}
	}
	if _, err := server.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: roots}); err == nil {
		t.Error("server certificate valid for example.com")
	}
	client := parse(p.ClientCertPEM)
	if _, err := client.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if client.Subject.CommonName != ClientCommonName {
		t.Errorf("client CN %q", client.Subject.CommonName)
	}
	for _, f := range []string{p.ServerKeyFile, p.ClientKeyFile} {
		if info, err := os.Stat(f); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("key file %s: %v %v, want mode 0600", f, info.Mode(), err)
		}
	}
	if _, err := tls.LoadX509KeyPair(p.ServerCertFile, p.ServerKeyFile); err != nil {
		t.Errorf("server key pair: %v", err)
	}
}

func TestRedisTLS(t *testing.T) {
	p := StartPKI(t)
	const pw = "redis-pw-4711"
	r, err := NewRedisWith(RedisOptions{
		TLS:      p.RedisTLS(true),
		Users:    []string{"default off", "inv on >" + pw + " ~* &* +@all"},
		Username: "inv", Password: pw,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	ctx := context.Background()
	if want := fmt.Sprintf("rediss://127.0.0.1:%d/0", r.Port); r.URL() != want {
		t.Errorf("URL() = %q, want %q", r.URL(), want)
	}
	c := r.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET over TLS: %v", err)
	}
	if u, err := c.Do(ctx, "acl", "whoami").Text(); err != nil || u != "inv" {
		t.Errorf("ACL WHOAMI = %q, %v; want inv", u, err)
	}

	try := func(o *redis.Options) error {
		o.Addr, o.DisableIdentity, o.MaxRetries = r.Addr(), true, -1
		cl := redis.NewClient(o)
		defer cl.Close()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return cl.Get(cctx, "k").Err()
	}
	if err := try(&redis.Options{Username: "inv", Password: pw}); err == nil {
		t.Error("plain TCP client accepted")
	}
	if err := try(&redis.Options{Username: "inv", Password: pw, TLSConfig: p.ClientTLSNoCert()}); err == nil {
		t.Error("TLS client without a certificate accepted")
	}
	if err := try(&redis.Options{Username: "inv", Password: "wrong", TLSConfig: p.ClientTLS()}); err == nil {
		t.Error("wrong password accepted")
	}
	if err := try(&redis.Options{TLSConfig: p.ClientTLS()}); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("the default user: %v, want NOAUTH", err)
	}

	// Stop and Start keep the setup (the readiness probe authenticates).
	r.Stop(t)
	r.Start(t)
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Errorf("GET after restart = %q, %v", v, err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestPostgresTLS(t *testing.T) {
	p := StartPKI(t)
	opts := p.PostgresTLS()
	opts.HBA = []string{"hostssl all all 127.0.0.1/32 scram-sha-256"}
	pg, err := NewPostgresWith(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Close() })
	const pw = "pg-pw-0815"
	pg.Exec(t, "postgres", "CREATE ROLE app LOGIN PASSWORD '"+pw+"'")
	pg.CreateDatabase(t, "app db")

	base := fmt.Sprintf("postgres://app:%s@127.0.0.1:%d/%s", pw, pg.Port, url.PathEscape("app db"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tlsURL := base + "?sslmode=verify-full&sslrootcert=" + url.QueryEscape(p.CAFile)
	conn, err := pgconn.Connect(ctx, tlsURL)
	if err != nil {
		t.Fatalf("verify-full connection: %v", err)
	}
	res, err := conn.Exec(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").ReadAll()
	if err != nil || len(res) != 1 || len(res[0].Rows) != 1 || string(res[0].Rows[0][0]) != "t" {
		t.Errorf("pg_stat_ssl of the connection: %v %v", res, err)
	}
	_ = conn.Close(ctx)

	if c, err := pgconn.Connect(ctx, base+"?sslmode=disable"); err == nil {
		_ = c.Close(ctx)
		t.Error("a connection without TLS was accepted")
	} else if !strings.Contains(err.Error(), "no pg_hba.conf entry") {
		t.Errorf("connection without TLS: %v, want no pg_hba.conf entry", err)
	}
	if c, err := pgconn.Connect(ctx, base+"?sslmode=verify-full&sslrootcert="+url.QueryEscape(p.ClientCertFile)); err == nil {
		_ = c.Close(ctx)
		t.Error("verify-full against the wrong root certificate succeeded")
	}

	if os.Geteuid() == 0 {
		info, err := os.Stat(pg.dataDir + "/server.key")
		if err != nil {
			t.Fatal(err)
		}
		if st := info.Sys().(*syscall.Stat_t); st.Uid == 0 || info.Mode().Perm() != 0o600 {
			t.Errorf("server.key owned by uid %d with mode %v, want the postgres user and 0600", st.Uid, info.Mode().Perm())
		}
	}

	// Stop and Start: the readiness probe uses the socket.
	pg.Stop(t)
	pg.Start(t)
	if got := pg.Query(t, "app db", "SELECT current_setting('ssl')"); len(got) != 1 || got[0][0] != "on" {
		t.Errorf("ssl after restart = %v", got)
	}
}

func TestNATSTLS(t *testing.T) {
	p := StartPKI(t)
	const pw = "nats-pw-1234"
	n := StartNATSWith(t, NATSOptions{TLS: p.NATSTLS(true), User: "inv", Password: pw})
	url := fmt.Sprintf("tls://127.0.0.1:%d", n.Port)
	connect := func(opts ...nats.Option) (*nats.Conn, error) {
		return nats.Connect(url, append(opts, nats.NoReconnect(), nats.Timeout(5*time.Second))...)
	}
	nc, err := connect(nats.RootCAs(p.CAFile), nats.ClientCert(p.ClientCertFile, p.ClientKeyFile), nats.UserInfo("inv", pw))
	if err != nil {
		t.Fatalf("TLS connect: %v", err)
	}
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Error("server does not require TLS")
	}
	sub, err := nc.SubscribeSync("x")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("x", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(5 * time.Second); err != nil || string(m.Data) != "hi" {
		t.Errorf("round trip: %v %v", m, err)
	}

	for name, opts := range map[string][]nats.Option{
		"no client certificate": {nats.RootCAs(p.CAFile), nats.UserInfo("inv", pw)},
		"wrong password":        {nats.RootCAs(p.CAFile), nats.ClientCert(p.ClientCertFile, p.ClientKeyFile), nats.UserInfo("inv", "nope")},
	} {
		if c, err := connect(opts...); err == nil {
			c.Close()
			t.Errorf("%s: connection accepted", name)
		}
	}
	if c, err := nats.Connect(n.URL(), nats.UserInfo("inv", pw), nats.NoReconnect(), nats.Timeout(5*time.Second)); err == nil {
		c.Close()
		t.Error("a client without TLS configuration connected")
	}
}
