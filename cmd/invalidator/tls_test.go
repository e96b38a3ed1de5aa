package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"

	"github.com/cachewire/invalidator/internal/testsrv"
)

// The passwords below are distinctive so that finding one in the daemon's
// output cannot be a coincidence.
const (
	redisSecret = "rds-Secret-8c1f"
	pgSecret    = "pg-Secret-51ad"
	natsSecret  = "nats-Secret-e07b"
	natsToken   = "nats-Token-9a3c"
)

// assertNoSecrets fails the test if the daemon's output holds a secret.
func assertNoSecrets(t *testing.T, d *daemon, secrets ...string) {
	t.Helper()
	out := d.out.String()
	for _, s := range secrets {
		if strings.Contains(out, s) {
			i := strings.Index(out, s)
			t.Errorf("secret %q appears in the daemon's output: ...%s...", s, out[max(0, i-200):min(len(out), i+50)])
		}
	}
}

// startingConfig returns the redacted configuration the daemon logged at
// start.
func startingConfig(t *testing.T, d *daemon) map[string]any {
	t.Helper()
	for _, line := range strings.Split(d.out.String(), "\n") {
		var entry struct {
			Msg    string         `json:"msg"`
			Config map[string]any `json:"config"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "starting" && entry.Config != nil {
			return entry.Config
		}
	}
	t.Fatalf("no \"starting\" log line with the configuration:\n%s", d.out.String())
	return nil
}

// startTLSRedis starts a Redis that accepts TLS only, with client
// certificates required, the default user off and the user inv.
func startTLSRedis(t *testing.T, pki *testsrv.PKI) *testsrv.Redis {
	t.Helper()
	r, err := testsrv.NewRedisWith(testsrv.RedisOptions{
		TLS:      pki.RedisTLS(true),
		Users:    []string{"default off", "inv on >" + redisSecret + " ~* &* +@all"},
		Username: "inv",
		Password: redisSecret,
	})
	if err != nil {
		t.Fatalf("testsrv: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("testsrv: %v", err)
		}
	})
	return r
}

// TestTLS_Redis runs the daemon against a Redis that accepts only TLS
// with a client certificate and an ACL user: with the CA, certificate and
// key it invalidates; without the client certificate it keeps running,
// retrying, and reports not ready; a later run with the certificate
// applies what was committed meanwhile. No password reaches the log.
func TestTLS_Redis(t *testing.T) {
	pki := testsrv.StartPKI(t)
	r := startTLSRedis(t, pki)
	redisURL := fmt.Sprintf("rediss://inv:%s@127.0.0.1:%d/0", redisSecret, r.Port)
	// The fixture's own environment names its plain Redis; the entries
	// below come later and win (os/exec keeps the last of duplicates).
	f := newFixture(t,
		"INVALIDATOR_REDIS_URL="+redisURL,
		"INVALIDATOR_REDIS_TLS_CA_FILE="+pki.CAFile,
		"INVALIDATOR_REDIS_TLS_CERT_FILE="+pki.ClientCertFile,
		"INVALIDATOR_REDIS_TLS_KEY_FILE="+pki.ClientKeyFile,
	)
	f.redis = r
	f.rdb = r.Client(t)
	f.sub = newSubscriber(t, f.rdb, "cache:invalidate:*")

	d := f.startReady()
	if got, want := startingConfig(t, d)["redis_url"], fmt.Sprintf("rediss://inv:xxxxx@127.0.0.1:%d/0", r.Port); got != want {
		t.Errorf("logged redis_url = %v, want %v", got, want)
	}
	f.set("tenant:tls:user:1:profile", "tenant:tls:user:2:profile")
	f.exec(`INSERT INTO users VALUES ('tls', 1, 'a')`)
	f.sync()
	if f.exists("tenant:tls:user:1:profile") {
		t.Error("key not deleted over TLS")
	}
	if !f.exists("tenant:tls:user:2:profile") {
		t.Error("another key was deleted")
	}
	checkMessage(t, oneMessage(t, f.sub, "user:tls:1"), "insert", "public.users", "user-profile", []string{"tenant:tls:user:1:profile"})
	if code := d.stop(t); code != 0 {
		t.Errorf("SIGTERM: exit status %d, want 0", code)
	}
	assertNoSecrets(t, d, redisSecret)

	// Committed while no daemon runs: the slot keeps it.
	f.exec(`INSERT INTO users VALUES ('tls', 2, 'b')`)

	t.Run("without client certificate", func(t *testing.T) {
		saved := f.env
		f.env = append(append([]string(nil), saved...), "INVALIDATOR_REDIS_TLS_CERT_FILE=", "INVALIDATOR_REDIS_TLS_KEY_FILE=")
		d := f.start()
		f.env = saved
		eventually(t, waitLong, "two failed attempts to reach Redis", func() bool {
			if d.exited() {
				t.Fatalf("the daemon exited: %v\n%s", d.err, d.out.String())
			}
			return strings.Count(d.out.String(), "cannot reach Redis") >= 2
		})
		if code, body := d.readyz(); code != 503 || !strings.Contains(body, "not ready") {
			t.Errorf("/readyz = %d %q, want 503 while Redis refuses the connection", code, body)
		}
		if resp, err := httpGet("http://" + d.addr + "/healthz"); err != nil || resp != 200 {
			t.Errorf("/healthz = %d, %v; want 200 (alive, waiting)", resp, err)
		}
		out := d.out.String()
		if !strings.Contains(out, "certificate required") {
			t.Errorf("the log does not say why Redis refused the connection:\n%s", redisErrors(out))
		}
		if !f.exists("tenant:tls:user:2:profile") {
			t.Error("a daemon that cannot reach Redis deleted a key")
		}
		if code := d.stop(t); code != 0 {
			t.Errorf("SIGTERM while waiting for Redis: exit status %d, want 0", code)
		}
		assertNoSecrets(t, d, redisSecret)
	})

	t.Run("with it again", func(t *testing.T) {
		d := f.startReady()
		f.sync()
		if f.exists("tenant:tls:user:2:profile") {
			t.Error("the change committed while no daemon could reach Redis was not applied")
		}
		if code := d.stop(t); code != 0 {
			t.Errorf("SIGTERM: exit status %d, want 0", code)
		}
		assertNoSecrets(t, d, redisSecret)
	})
}

// httpGet returns the status code of a GET.
func httpGet(u string) (int, error) {
	resp, err := http.Get(u)
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// pgSync commits a sentinel row in db on pg and waits for its message.
func pgSync(t *testing.T, pg *testsrv.Postgres, db string, f *fixture) {
	t.Helper()
	rows := pg.Query(t, db, "INSERT INTO sentinel DEFAULT VALUES RETURNING id")
	ch := "cache:invalidate:sentinel:" + rows[0][0]
	f.sub.waitFor(t, waitLong, "sentinel message "+ch, func(m received) bool { return m.Channel == ch })
}

// TestTLS_Postgres runs the daemon against its own PostgreSQL that admits
// TCP clients only over TLS (hostssl, scram-sha-256), with
// sslmode=verify-full and the test CA: it streams over TLS and
// invalidates. The password never reaches the log.
func TestTLS_Postgres(t *testing.T) {
	needIntegration(t)
	pki := testsrv.StartPKI(t)
	opts := pki.PostgresTLS()
	opts.HBA = []string{
		"hostssl all all 127.0.0.1/32 scram-sha-256",
		"hostssl replication all 127.0.0.1/32 scram-sha-256",
	}
	pg, err := testsrv.NewPostgresWith(opts)
	if err != nil {
		t.Fatalf("testsrv: %v", err)
	}
	t.Cleanup(func() {
		if err := pg.Close(); err != nil {
			t.Errorf("testsrv: %v", err)
		}
	})
	const db = "tlsdb"
	pg.CreateDatabase(t, db)
	pg.Exec(t, db, schema)
	pg.Exec(t, "postgres", "CREATE ROLE inv LOGIN SUPERUSER REPLICATION PASSWORD '"+pgSecret+"'")

	base := fmt.Sprintf("postgres://inv:%s@127.0.0.1:%d/%s", pgSecret, pg.Port, db)
	pgURL := base + "?sslmode=verify-full&sslrootcert=" + url.QueryEscape(pki.CAFile)
	// pg_hba.conf refuses a client without TLS.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if c, err := pgconn.Connect(ctx, base+"?sslmode=disable"); err == nil {
		_ = c.Close(ctx)
		t.Fatal("a connection without TLS was accepted")
	} else if !strings.Contains(err.Error(), "no pg_hba.conf entry") {
		t.Errorf("connection without TLS: %v, want no pg_hba.conf entry", err)
	}

	f := newFixture(t, "INVALIDATOR_POSTGRES_URL="+pgURL)
	d := f.startReady()
	if got, want := startingConfig(t, d)["postgres_url"], "postgres://inv:xxxxx@"; !strings.HasPrefix(fmt.Sprint(got), want) {
		t.Errorf("logged postgres_url = %v, want it to start with %s", got, want)
	}
	f.set("tenant:pgtls:user:1:profile", "tenant:pgtls:user:2:profile")
	pg.Exec(t, db, `INSERT INTO users VALUES ('pgtls', 1, 'a')`)
	pgSync(t, pg, db, f)
	if f.exists("tenant:pgtls:user:1:profile") {
		t.Error("key not deleted for a change streamed over TLS")
	}
	if !f.exists("tenant:pgtls:user:2:profile") {
		t.Error("another key was deleted")
	}
	if msgs := f.sub.on("cache:invalidate:user:pgtls:1"); len(msgs) != 1 {
		t.Errorf("want 1 message on user:pgtls:1, got %d", len(msgs))
	}
	// The replication connection itself is encrypted.
	got := pg.Query(t, "postgres", `SELECT s.ssl, a.usename FROM pg_stat_replication a JOIN pg_stat_ssl s USING (pid)`)
	if len(got) != 1 || got[0][0] != "t" || got[0][1] != "inv" {
		t.Errorf("walsender connections (ssl, user) = %v, want one TLS connection of inv", got)
	}
	if code := d.stop(t); code != 0 {
		t.Errorf("SIGTERM: exit status %d, want 0", code)
	}
	assertNoSecrets(t, d, pgSecret)
}

// tlsNATSCollector subscribes to filter over TLS with the client
// certificate and the given credentials.
func tlsNATSCollector(t *testing.T, pki *testsrv.PKI, url, filter string, auth nats.Option) *natsCollector {
	t.Helper()
	nc, err := nats.Connect(url, nats.RootCAs(pki.CAFile), nats.ClientCert(pki.ClientCertFile, pki.ClientKeyFile), auth,
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("nats connect over TLS: %v", err)
	}
	t.Cleanup(nc.Close)
	if !nc.TLSRequired() {
		t.Fatal("the NATS server does not require TLS")
	}
	return subscribeNATS(t, nc, filter)
}

// TestTLS_NATS bridges to a NATS server that requires TLS with a client
// certificate, with user/password or token authentication: the messages
// reach a TLS subscriber, and neither password nor token reaches the log.
func TestTLS_NATS(t *testing.T) {
	pki := testsrv.StartPKI(t)
	for _, tc := range []struct {
		name   string
		opts   testsrv.NATSOptions
		user   string // URL user info
		auth   nats.Option
		secret string
	}{
		{"user and password", testsrv.NATSOptions{User: "inv", Password: natsSecret}, "inv:" + natsSecret, nats.UserInfo("inv", natsSecret), natsSecret},
		{"token", testsrv.NATSOptions{Token: natsToken}, natsToken, nats.Token(natsToken), natsToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.TLS = pki.NATSTLS(true)
			ns := testsrv.StartNATSWith(t, tc.opts)
			f := newFixture(t,
				fmt.Sprintf("INVALIDATOR_NATS_URL=tls://%s@127.0.0.1:%d", tc.user, ns.Port),
				"INVALIDATOR_NATS_CA_FILE="+pki.CAFile,
				"INVALIDATOR_NATS_CERT_FILE="+pki.ClientCertFile,
				"INVALIDATOR_NATS_KEY_FILE="+pki.ClientKeyFile,
				"INVALIDATOR_HEARTBEAT_INTERVAL=200ms",
			)
			got := tlsNATSCollector(t, pki, fmt.Sprintf("tls://127.0.0.1:%d", ns.Port), "cache.invalidate.>", tc.auth)
			d := f.startReady()
			f.exec(`INSERT INTO users VALUES ('nt', 1, 'x')`)
			f.sync()
			var m *nats.Msg
			eventually(t, waitLong, "the NATS message over TLS", func() bool { m = got.find("cache.invalidate.user.nt.1"); return m != nil })
			var body map[string]any
			if err := json.Unmarshal(m.Data, &body); err != nil || body["op"] != "insert" || body["table"] != "public.users" {
				t.Errorf("payload %s (%v)", m.Data, err)
			}
			eventually(t, waitLong, "a heartbeat on NATS over TLS", func() bool { return got.find("cache.invalidate._heartbeat") != nil })
			if n := d.metric(t, "invalidator_errors_total", `kind="nats"`); n != 0 {
				t.Errorf("%v NATS errors", n)
			}
			if code := d.stop(t); code != 0 {
				t.Errorf("SIGTERM: exit status %d, want 0", code)
			}
			assertNoSecrets(t, d, tc.secret)
		})
	}
}
