package testsrv

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// PostgresOptions change the server NewPostgresWith creates. The zero value
// is NewPostgres's server.
type PostgresOptions struct {
	// Version is the PostgreSQL major version to run. 0 means
	// DefaultPostgresVersion (15, Debian's postgresql-15 package); 14, 16, 17
	// and 18 (and 13, to test that it is refused) run the server binaries
	// .ci/deps installs under PostgresRoot. NewPostgresWith fails when they are not installed;
	// StartPostgresWith skips the test then (fails it under CI=true).
	Version int
	// Settings are extra server settings, "name=value", passed with -c after
	// the defaults (so they override them).
	Settings []string
	// Files are written into the data directory before the first start,
	// owned by the user the server runs as and with mode 0600, as
	// PostgreSQL demands of ssl_key_file. Settings may name them by their
	// bare name: relative paths are resolved against the data directory.
	Files map[string][]byte
	// HBA, when not empty, replaces pg_hba.conf. Its lines follow one that
	// admits the superuser "postgres" through the Unix socket without a
	// password; the helper's own connections (readiness, Exec, Query,
	// CreateDatabase) then use the socket, so they work whatever HBA says
	// about TCP. The URL method's TCP URL (sslmode=disable) works only if
	// HBA admits it.
	HBA []string
}

// PostgresTLS returns options that turn TLS on with the PKI's server
// certificate and key (copied into the data directory as server.crt and
// server.key, owned by the server's user, mode 0600) and its CA as
// ssl_ca_file (root.crt), which verifies client certificates where
// pg_hba.conf asks for them. Add HBA lines to require TLS.
func (p *PKI) PostgresTLS() PostgresOptions {
	return PostgresOptions{
		Settings: []string{"ssl=on", "ssl_cert_file=server.crt", "ssl_key_file=server.key", "ssl_ca_file=root.crt"},
		Files: map[string][]byte{
			"server.crt": p.ServerCertPEM,
			"server.key": p.ServerKeyPEM,
			"root.crt":   p.CAPEM,
		},
	}
}

// applyOptions writes the option files and pg_hba.conf into the data
// directory made by initdb.
func (p *Postgres) applyOptions(cred *syscall.Credential) error {
	files := map[string][]byte{}
	for name, data := range p.opts.Files {
		if name == "" || strings.ContainsRune(name, '/') || name == "." || name == ".." {
			return fmt.Errorf("postgres option file %q: give a bare file name", name)
		}
		files[name] = data
	}
	if len(p.opts.HBA) > 0 {
		hba := "# written by testsrv\nlocal all postgres trust\n" + strings.Join(p.opts.HBA, "\n") + "\n"
		files["pg_hba.conf"] = []byte(hba)
	}
	for name, data := range files {
		path := filepath.Join(p.dataDir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		// WriteFile keeps the mode of an existing file (pg_hba.conf).
		if err := os.Chmod(path, 0o600); err != nil {
			return fmt.Errorf("chmod %s: %w", path, err)
		}
		if cred != nil {
			if err := os.Chown(path, int(cred.Uid), int(cred.Gid)); err != nil {
				return fmt.Errorf("chown %s to user %q: %w", path, pgSystemUser, err)
			}
		}
	}
	return nil
}

// adminURL is the URL of the helper's own connections: URL, or the Unix
// socket when HBA replaced pg_hba.conf.
func (p *Postgres) adminURL(db string) string {
	if len(p.opts.HBA) == 0 {
		return p.URL(db)
	}
	return fmt.Sprintf("postgres://postgres@/%s?host=%s&port=%d&sslmode=disable",
		url.PathEscape(db), url.QueryEscape(p.sockDir), p.Port)
}

const (
	// DefaultPostgresVersion is the major version a zero PostgresOptions
	// runs: Debian's postgresql-15 package.
	DefaultPostgresVersion = 15
	// debianPGBinDir holds the PostgreSQL 15 server binaries of Debian's
	// postgresql-15 package.
	debianPGBinDir = "/usr/lib/postgresql/15/bin"
	// defaultPGRoot is where .ci/deps installs the other majors, one
	// directory each (bin/, lib/, share/).
	defaultPGRoot = "/opt/invalidator-test/pg"
)

// PostgresVersions are the major versions the integration suite runs the
// core guarantees on.
var PostgresVersions = []int{14, 15, 16, 17, 18}

// PostgresRoot is the directory .ci/deps installs PostgreSQL majors other
// than 15 into: $INVALIDATOR_TEST_PG_ROOT, or /opt/invalidator-test/pg.
func PostgresRoot() string {
	if r := os.Getenv("INVALIDATOR_TEST_PG_ROOT"); r != "" {
		return r
	}
	return defaultPGRoot
}

// PostgresBinDir returns the directory of the server binaries (postgres,
// initdb) of PostgreSQL major version, or an error saying how to install
// them.
func PostgresBinDir(version int) (string, error) {
	if version == 0 {
		version = DefaultPostgresVersion
	}
	dir, hint := filepath.Join(PostgresRoot(), fmt.Sprint(version), "bin"), "run .ci/deps"
	if version == DefaultPostgresVersion {
		dir, hint = debianPGBinDir, "install the postgresql-15 package, or run .ci/deps"
	}
	for _, b := range []string{"postgres", "initdb"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return "", fmt.Errorf("PostgreSQL %d is not installed (no %s; %s): %w", version, filepath.Join(dir, b), hint, err)
			}
			return "", fmt.Errorf("PostgreSQL %d server binary: %w", version, err)
		}
	}
	return dir, nil
}

// RequirePostgresVersion skips the test when PostgreSQL major version is
// not installed, with the reason, or fails it when the environment variable
// CI is "true" (CI installs every version, so a missing one is a fault).
func RequirePostgresVersion(tb testing.TB, version int) {
	tb.Helper()
	if _, err := PostgresBinDir(version); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("testsrv: %v", err)
		}
		tb.Skipf("testsrv: %v", err)
	}
}

// StartPostgresWith is NewPostgresWith for a single test, like
// StartPostgres; a version that is not installed skips the test (see
// RequirePostgresVersion).
func StartPostgresWith(tb testing.TB, opts PostgresOptions) *Postgres {
	tb.Helper()
	RequirePostgresVersion(tb, opts.Version)
	p, err := NewPostgresWith(opts)
	return forTest(tb, p, err)
}
