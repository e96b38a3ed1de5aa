package testsrv

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// pgSystemUser is the unprivileged user the server runs as when the
	// tests run as root.
	pgSystemUser = "postgres"
	// pgQueryTimeout bounds one Exec, Query or CreateDatabase call.
	pgQueryTimeout = 2 * time.Minute
)

// Postgres is a throwaway PostgreSQL cluster (15 unless
// PostgresOptions.Version says otherwise) with wal_level=logical,
// listening on 127.0.0.1 only, with trust authentication for the superuser
// "postgres". The postmaster runs as a direct child of the test binary, in its
// own process group; when the tests run as root it runs as the system user
// "postgres". Its data directory, Unix socket directory and server log live in
// a private temporary directory that Close removes.
//
// Server settings: max_wal_senders=20, max_replication_slots=20,
// fsync=off, full_page_writes=off (synchronous_commit stays on),
// logical_decoding_work_mem=64kB (so that logical decoding streams or spills
// every transaction larger than 64kB), wal_sender_timeout=60s, max_connections=200,
// shared_buffers=128MB.
//
// Exec, Query, CreateDatabase and URL may be used from parallel tests. Kill,
// Stop, Start and Close change the server's state and must not race with each
// other.
type Postgres struct {
	// Port is the TCP port on 127.0.0.1 the server listens on. It stays the
	// same across Stop, Kill and Start. Treat it as read-only.
	Port int

	opts    PostgresOptions
	dir     string // base temporary directory, removed by Close
	dataDir string
	sockDir string
	proc    *process

	closeOnce sync.Once
	closeErr  error
}

// NewPostgres creates a new cluster with initdb in a fresh temporary
// directory, starts it on a free port and returns once it accepts
// connections. It is meant for TestMain; the caller must call Close. On error
// nothing is left behind.
//
// When the process runs as root, initdb and postgres run as the system user
// "postgres" (created by Debian's postgresql-15 package); if that user does
// not exist, NewPostgres fails without creating it.
func NewPostgres() (*Postgres, error) {
	return NewPostgresWith(PostgresOptions{})
}

// NewPostgresWith is NewPostgres with options (extra settings, files in
// the data directory, client authentication rules); the zero
// PostgresOptions gives NewPostgres's server.
func NewPostgresWith(opts PostgresOptions) (*Postgres, error) {
	binDir, err := PostgresBinDir(opts.Version)
	if err != nil {
		return nil, err
	}
	postgresBin := filepath.Join(binDir, "postgres")
	initdbBin := filepath.Join(binDir, "initdb")
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	if opts.Version == 0 {
		opts.Version = DefaultPostgresVersion
	}

	p, err := postgresInTempDir("invalidator-pg-*", "postgres", opts)
	if err != nil {
		return nil, err
	}
	dir := p.dir
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	if err := p.prepareDirs(cred); err != nil {
		return nil, err
	}

	env := cleanEnv()
	initdb := exec.Command(initdbBin, "-D", p.dataDir, "--auth=trust", "-U", "postgres",
		"--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.Dir = dir
	initdb.Env = env
	initdb.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb %s: %w\n--- initdb output ---\n%s", p.dataDir, err, out)
	}
	if err := p.applyOptions(cred); err != nil {
		return nil, err
	}

	p.proc = &process{
		name:    "postgres",
		path:    postgresBin,
		dir:     dir,
		logPath: filepath.Join(dir, "postgres.log"),
		env:     env,
		cred:    cred,
	}
	if err := p.startOnFreePort(); err != nil {
		return nil, err
	}
	ok = true
	return p, nil
}

// postgresInTempDir is a server with opts in a fresh temporary directory
// (named after pattern, as os.MkdirTemp does), its data and socket
// directories named but not yet created; what names it in errors.
func postgresInTempDir(pattern, what string, opts PostgresOptions) (*Postgres, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return nil, fmt.Errorf("create %s temp dir: %w", what, err)
	}
	return &Postgres{
		opts:    opts,
		dir:     dir,
		dataDir: filepath.Join(dir, "data"),
		sockDir: filepath.Join(dir, "sock"),
	}, nil
}

// startOnFreePort makes the first start, on a free port, trying fresh ports
// when the server exits during startup.
func (p *Postgres) startOnFreePort() error {
	return p.proc.firstStart(p.proc.name, func() error {
		var err error
		if p.Port, err = FreePort(); err != nil {
			return err
		}
		return p.start()
	})
}

// StartPostgres is NewPostgres for a single test: it fails the test with
// tb.Fatal if the server cannot be started and registers Close with
// tb.Cleanup, reporting a failed Close with tb.Error.
func StartPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	p, err := NewPostgres()
	return forTest(tb, p, err)
}

// postgresCredential returns the credentials to run the server with: nil
// (the current user) unless running as root, the "postgres" system user
// otherwise.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(pgSystemUser)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL refuses to run as root and the tests run as root, so the server must run as the system user %q, "+
			"which does not exist (install postgresql-15, which creates it, create it yourself, or run the tests as a non-root user): %w",
			pgSystemUser, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parse uid %q of user %q: %w", u.Uid, pgSystemUser, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parse gid %q of user %q: %w", u.Gid, pgSystemUser, err)
	}
	if uid == 0 {
		return nil, fmt.Errorf("system user %q has uid 0; PostgreSQL refuses to run as root", pgSystemUser)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// prepareDirs makes the base directory traversable and the data and socket
// directories owned by the user the server runs as.
func (p *Postgres) prepareDirs(cred *syscall.Credential) error {
	if err := os.Chmod(p.dir, 0o755); err != nil {
		return fmt.Errorf("chmod postgres temp dir: %w", err)
	}
	if err := os.Mkdir(p.dataDir, 0o700); err != nil {
		return fmt.Errorf("create postgres data dir: %w", err)
	}
	if err := os.Mkdir(p.sockDir, 0o755); err != nil {
		return fmt.Errorf("create postgres socket dir: %w", err)
	}
	if cred == nil {
		return nil
	}
	for _, d := range []string{p.dataDir, p.sockDir} {
		if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("chown %s to user %q: %w", d, pgSystemUser, err)
		}
	}
	return checkTraversable(p.dir, cred)
}

// checkTraversable fails with a clear message if a directory on the path to
// dir cannot be searched by the user in cred.
func checkTraversable(dir string, cred *syscall.Credential) error {
	for d := dir; ; d = filepath.Dir(d) {
		info, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("stat %s: %w", d, err)
		}
		perm := info.Mode().Perm()
		st, _ := info.Sys().(*syscall.Stat_t)
		ok := perm&0o001 != 0 ||
			(st != nil && st.Uid == cred.Uid && perm&0o100 != 0) ||
			(st != nil && st.Gid == cred.Gid && perm&0o010 != 0)
		if !ok {
			return fmt.Errorf("directory %s (mode %v) is not searchable by user %q, which runs PostgreSQL; "+
				"set TMPDIR to a world-searchable directory such as /tmp", d, perm, pgSystemUser)
		}
		if parent := filepath.Dir(d); parent == d {
			return nil
		}
	}
}

// args are the postmaster's command-line arguments.
func (p *Postgres) args() []string {
	settings := []string{
		"listen_addresses=127.0.0.1",
		"port=" + strconv.Itoa(p.Port),
		"unix_socket_directories=" + p.sockDir,
		"logging_collector=off",
		"wal_level=logical",
		"max_wal_senders=20",
		"max_replication_slots=20",
		"fsync=off",
		"full_page_writes=off",
		"logical_decoding_work_mem=64kB",
		"wal_sender_timeout=60s",
		"max_connections=200",
		"shared_buffers=128MB",
	}
	settings = append(settings, p.opts.Settings...)
	args := []string{"-D", p.dataDir}
	for _, s := range settings {
		args = append(args, "-c", s)
	}
	return args
}

// start runs the postmaster and waits until it accepts connections.
func (p *Postgres) start() error {
	if err := p.proc.start(p.args()); err != nil {
		return err
	}
	return p.proc.waitReady(readyTimeout, func(ctx context.Context) error {
		conn, err := pgconn.Connect(ctx, p.adminURL("postgres"))
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		return conn.Close(ctx)
	})
}

// Version returns the server's major version (PostgresOptions.Version, 15
// by default).
func (p *Postgres) Version() int {
	return p.opts.Version
}

// URL returns the connection URL of database db for the superuser:
// postgres://postgres@127.0.0.1:PORT/DB?sslmode=disable. The database
// "postgres" always exists.
func (p *Postgres) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, url.PathEscape(db))
}

// LogPath returns the path of the server log file. It holds the output of
// every run of the postmaster, each preceded by a "=== testsrv:" line, and is
// removed by Close.
func (p *Postgres) LogPath() string {
	return p.proc.logPath
}

// CreateDatabase creates database name (quoted as an identifier, so any
// name is allowed) and returns its URL. It fails the test on error, for
// instance if the database exists.
func (p *Postgres) CreateDatabase(tb testing.TB, name string) string {
	tb.Helper()
	if _, err := p.exec(context.Background(), "postgres", "CREATE DATABASE "+quoteIdent(name)); err != nil {
		tb.Fatalf("testsrv: create database %q: %v", name, err)
	}
	return p.URL(name)
}

// Exec runs sql in database db on a new connection with the simple query
// protocol, so sql may hold several statements separated by semicolons (run
// as one implicit transaction unless it contains explicit BEGIN/COMMIT). It
// fails the test if any statement fails. It may be called from tb.Cleanup
// functions.
func (p *Postgres) Exec(tb testing.TB, db string, sql string) {
	tb.Helper()
	if _, err := p.exec(context.Background(), db, sql); err != nil {
		tb.Fatalf("testsrv: exec in database %q: %v\nSQL: %s", db, err, sql)
	}
}

// Query runs sql like Exec and returns the rows of the last statement's
// result, each column as text; SQL NULL becomes "". It returns an empty, non-nil
// slice when the last statement returns no rows.
func (p *Postgres) Query(tb testing.TB, db, sql string) [][]string {
	tb.Helper()
	results, err := p.exec(context.Background(), db, sql)
	if err != nil {
		tb.Fatalf("testsrv: query in database %q: %v\nSQL: %s", db, err, sql)
	}
	rows := [][]string{}
	if len(results) == 0 {
		return rows
	}
	for _, r := range results[len(results)-1].Rows {
		row := make([]string, len(r))
		for i, v := range r {
			row[i] = string(v) // nil (NULL) becomes ""
		}
		rows = append(rows, row)
	}
	return rows
}

// exec runs sql on a fresh connection and returns all results.
func (p *Postgres) exec(ctx context.Context, db, sql string) ([]*pgconn.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, pgQueryTimeout)
	defer cancel()
	conn, err := pgconn.Connect(ctx, p.adminURL(db))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", p.adminURL(db), err)
	}
	defer conn.Close(context.Background())
	results, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("run sql: %w", err)
	}
	for _, r := range results {
		if r.Err != nil {
			return nil, fmt.Errorf("run sql: %w", r.Err)
		}
	}
	return results, nil
}

// Kill simulates a crash: it sends SIGKILL to the postmaster and all its
// children at once and returns when every one of them is gone. The data
// directory is left as the crash left it (including a stale postmaster.pid);
// a later Start runs crash recovery. It fails the test if the server is not
// running.
func (p *Postgres) Kill(tb testing.TB) {
	tb.Helper()
	if !p.proc.running() {
		tb.Fatalf("testsrv: kill postgres: not running")
	}
	if err := p.proc.kill(); err != nil {
		tb.Fatalf("testsrv: kill postgres: %v", err)
	}
}

// Stop shuts the server down cleanly (fast shutdown: SIGINT to the
// postmaster, which ends sessions, writes a shutdown checkpoint and exits) and
// returns when every server process is gone. Committed data survives a later
// Start. It fails the test if the server is not running or does not exit in
// time (it is then killed).
func (p *Postgres) Stop(tb testing.TB) {
	tb.Helper()
	p.proc.stopForTest(tb, "postgres", syscall.SIGINT)
}

// Start starts the server again after Stop or Kill, on the same port and data
// directory, and returns when it accepts connections (after crash recovery,
// if any). It fails the test, with the server log's tail, if the server is
// already running or does not become ready.
func (p *Postgres) Start(tb testing.TB) {
	tb.Helper()
	if err := p.start(); err != nil {
		tb.Fatalf("testsrv: start postgres: %v", err)
	}
}

// Close stops the server (fast shutdown; if that takes longer than 10 s, for
// instance because a replication client does not confirm the last WAL, every
// server process is killed, which is not an error) and removes the data
// directory, socket directory and log. It returns only when no server process
// is left. It may be called more than once and whether or not the server is
// running; later calls return the first call's result.
func (p *Postgres) Close() error {
	p.closeOnce.Do(func() {
		p.closeErr = p.proc.closeAndRemove("postgres", syscall.SIGINT, p.dir)
	})
	return p.closeErr
}

// quoteIdent quotes s as an SQL identifier.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
