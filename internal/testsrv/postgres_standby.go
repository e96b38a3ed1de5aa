package testsrv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// StartStandby makes a physical streaming standby of p for a single test:
// it stops p cleanly, copies its data directory (so the copy starts from
// p's shutdown checkpoint), starts p again, and starts the copy on a fresh
// port with standby.signal, primary_conninfo naming p (dbname=postgres, which
// slot synchronisation needs), primary_slot_name=slot (a physical slot the
// caller created on p beforehand, so p keeps the WAL the standby needs) and
// hot_standby_feedback=on, plus settings (for instance
// "sync_replication_slots=on" on 17+). The standby has p's options and
// version; Close is registered with tb.Cleanup. Promote it with
// Exec(tb, "postgres", "SELECT pg_promote()").
func (p *Postgres) StartStandby(tb testing.TB, slot string, settings ...string) *Postgres {
	tb.Helper()
	p.Stop(tb)
	s, err := p.copyForStandby(slot, settings)
	p.Start(tb)
	if err == nil {
		err = s.startOnFreePort()
		if err != nil {
			_ = os.RemoveAll(s.dir)
		}
	}
	if err != nil {
		tb.Fatalf("testsrv: standby of postgres on port %d: %v", p.Port, err)
	}
	closeAtCleanup(tb, s)
	return s
}

// copyForStandby copies the stopped p's data directory, without its
// replication slots (as pg_basebackup would: a copied logical slot would
// block slot synchronisation), and prepares the copy as its standby.
func (p *Postgres) copyForStandby(slot string, settings []string) (*Postgres, error) {
	opts := p.opts
	conninfo := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres application_name=testsrv_standby", p.Port)
	opts.Settings = append(append(append([]string{}, p.opts.Settings...),
		"primary_conninfo="+conninfo,
		"primary_slot_name="+slot,
		"hot_standby=on",
		"hot_standby_feedback=on"), settings...)
	s, err := postgresInTempDir("invalidator-pg-standby-*", "standby", opts)
	if err != nil {
		return nil, err
	}
	dir := s.dir
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("chmod standby temp dir: %w", err)
	}
	// cp -a keeps the owner (the server's user) and the 0700 modes
	// PostgreSQL insists on.
	if out, err := exec.Command("cp", "-a", p.dataDir, s.dataDir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copy data directory %s: %w: %s", p.dataDir, err, out)
	}
	if err := os.Mkdir(s.sockDir, 0o755); err != nil {
		return nil, fmt.Errorf("create standby socket dir: %w", err)
	}
	cred := p.proc.cred
	if cred != nil {
		if err := os.Chown(s.sockDir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("chown %s: %w", s.sockDir, err)
		}
	}
	signal := filepath.Join(s.dataDir, "standby.signal")
	if err := os.WriteFile(signal, nil, 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", signal, err)
	}
	if cred != nil {
		if err := os.Chown(signal, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("chown %s: %w", signal, err)
		}
	}
	s.proc = &process{
		name:    "postgres standby",
		path:    p.proc.path,
		dir:     dir,
		logPath: filepath.Join(dir, "postgres.log"),
		env:     p.proc.env,
		cred:    cred,
	}
	slots, err := filepath.Glob(filepath.Join(s.dataDir, "pg_replslot", "*"))
	if err != nil {
		return nil, fmt.Errorf("list copied slots: %w", err)
	}
	for _, d := range slots {
		if err := os.RemoveAll(d); err != nil {
			return nil, fmt.Errorf("remove copied slot: %w", err)
		}
	}
	ok = true
	return s, nil
}
