package testsrv

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

const (
	// natsBin is where Debian's nats-server package installs the binary;
	// the brief's /usr/bin and $PATH are tried if it is not there.
	natsBin        = "/usr/sbin/nats-server"
	natsBinAltPath = "/usr/bin/nats-server"
)

// NATS is a throwaway nats-server listening on 127.0.0.1 only, without
// authentication or configuration file (NewNATSWith adds TLS and
// authentication), run as the current user, with HTTP
// monitoring on a second loopback port. With JetStream enabled its file store
// lives in the server's private temporary directory, so streams and their
// messages survive Stop and Start. Close removes the directory.
//
// URL may be used from parallel tests; Stop, Start and Close must not race
// with each other.
type NATS struct {
	// Port is the client port on 127.0.0.1. It stays the same across Stop
	// and Start. Treat it as read-only.
	Port int
	// MonitorPort is the HTTP monitoring port on 127.0.0.1 (/healthz,
	// /varz, /jsz, ...). Treat it as read-only.
	MonitorPort int
	// JetStream reports whether JetStream is enabled. Treat it as read-only.
	JetStream bool

	opts     NATSOptions
	confPath string // configuration file, "" without one
	dir      string // base temporary directory, removed by Close
	storeDir string
	proc     *process

	closeOnce sync.Once
	closeErr  error
}

// NewNATS starts a nats-server on free ports in a fresh temporary directory,
// with JetStream (file storage) if jetstream is true, and returns once it
// accepts TCP connections and its /healthz endpoint (which includes
// JetStream's state) answers 200. It is meant for TestMain; the caller must
// call Close. On error nothing is left behind.
func NewNATS(jetstream bool) (*NATS, error) {
	return NewNATSWith(NATSOptions{JetStream: jetstream})
}

// NewNATSWith is NewNATS with options (JetStream, TLS, authentication); the
// options other than JetStream go into a configuration file in the
// server's directory.
func NewNATSWith(opts NATSOptions) (*NATS, error) {
	jetstream := opts.JetStream
	bin, err := findBinary("nats-server", natsBin, natsBinAltPath)
	if err != nil {
		return nil, fmt.Errorf("nats server binary (install the nats-server package): %w", err)
	}
	dir, err := os.MkdirTemp("", "invalidator-nats-*")
	if err != nil {
		return nil, fmt.Errorf("create nats temp dir: %w", err)
	}
	n := &NATS{JetStream: jetstream, opts: opts, dir: dir, storeDir: filepath.Join(dir, "jetstream")}
	if err := n.writeConfig(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	n.proc = &process{
		name:    "nats-server",
		path:    bin,
		dir:     dir,
		logPath: filepath.Join(dir, "nats.log"),
		env:     cleanEnv(),
	}
	err = n.proc.firstStart("nats", func() error {
		var err error
		if n.Port, err = FreePort(); err != nil {
			return err
		}
		if n.MonitorPort, err = FreePort(); err != nil {
			return err
		}
		return n.start()
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return n, nil
}

// StartNATS is NewNATS for a single test: it fails the test with tb.Fatal if
// the server cannot be started and registers Close with tb.Cleanup, reporting
// a failed Close with tb.Error.
func StartNATS(tb testing.TB, jetstream bool) *NATS {
	tb.Helper()
	n, err := NewNATS(jetstream)
	return forTest(tb, n, err)
}

// args are nats-server's command-line arguments.
func (n *NATS) args() []string {
	var args []string
	if n.confPath != "" {
		args = append(args, "--config", n.confPath) // the flags below override it
	}
	args = append(args,
		"--addr", "127.0.0.1",
		"--port", strconv.Itoa(n.Port),
		"--http_port", strconv.Itoa(n.MonitorPort),
		"--server_name", "testsrv",
	)
	if n.JetStream {
		args = append(args, "--jetstream", "--store_dir", n.storeDir)
	}
	return args
}

// start runs nats-server and waits until it accepts clients and /healthz
// answers 200.
func (n *NATS) start() error {
	if err := n.proc.start(n.args()); err != nil {
		return err
	}
	return n.proc.waitReady(readyTimeout, func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", n.Addr())
		if err != nil {
			return fmt.Errorf("dial: %w", err)
		}
		_ = conn.Close()
		return n.healthz(ctx)
	})
}

// healthz checks the monitoring endpoint /healthz.
func (n *NATS) healthz(ctx context.Context) error {
	url := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(n.MonitorPort)) + "/healthz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("build healthz request: %w", err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: %s: %s", url, resp.Status, body)
	}
	return nil
}

// Addr returns the client address, "127.0.0.1:PORT".
func (n *NATS) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.Port))
}

// URL returns the client URL, "nats://127.0.0.1:PORT".
func (n *NATS) URL() string {
	return "nats://" + n.Addr()
}

// LogPath returns the path of the server log file (the output of every run,
// each preceded by a "=== testsrv:" line). Close removes it.
func (n *NATS) LogPath() string {
	return n.proc.logPath
}

// Stop shuts the server down with SIGINT and returns when the process is
// gone. JetStream streams and messages survive a later Start. It fails the
// test if the server is not running or does not exit in time (it is then
// killed).
func (n *NATS) Stop(tb testing.TB) {
	tb.Helper()
	n.proc.stopForTest(tb, "nats", syscall.SIGINT)
}

// Start starts the server again after Stop, on the same ports with the same
// JetStream store, and returns when it is ready. It fails the test, with the
// log's tail, if the server is already running or does not become ready.
func (n *NATS) Start(tb testing.TB) {
	tb.Helper()
	if err := n.start(); err != nil {
		tb.Fatalf("testsrv: start nats: %v", err)
	}
}

// Close stops the server (SIGINT; SIGKILL after 10 s, which is not an error)
// and removes its directory and JetStream store. It returns only when the
// process is gone. It may be called more than once and whether or not the
// server is running; later calls return the first call's result.
func (n *NATS) Close() error {
	n.closeOnce.Do(func() {
		n.closeErr = n.proc.closeAndRemove("nats", syscall.SIGINT, n.dir)
	})
	return n.closeErr
}
