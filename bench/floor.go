package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

const floorSlot = "bench_floor"

// floor is pg_recvlogical reading the same publication on its own slot:
// the least any consumer of the stream needs to receive a transaction.
//
// Completion is taken from its output file, not from the slot:
// pg_recvlogical reports its position at most once per --status-interval,
// in whole seconds, which is too coarse. It writes each pgoutput message,
// followed by "\n", with write(2) as soon as it is received, so the suite
// watches the file's tail (every millisecond: one fstat, and one pread when
// it grew) for a COMMIT message ('C', flags 0, commit LSN, end LSN, commit
// time: 26 bytes) of a transaction that committed after the floor started.
// A file, not a pipe: reading 200,000 small writes through a pipe cost the
// suite seconds of CPU on a machine it shares with what it measures.
type floor struct {
	cmd      *exec.Cmd
	outPath  string
	startLSN uint64
	seen     chan struct{} // closed when the COMMIT is seen
	exited   chan struct{}
	stopRead chan struct{}
	readDone chan struct{}
	mu       sync.Mutex
	at       time.Time
	endLSN   uint64
	bytes    int64
}

// startFloor creates the floor's slot, starts pg_recvlogical on it and
// waits until it streams. Call stop when done.
func (s *suite) startFloor(ctx context.Context) (*floor, error) {
	if _, err := query(ctx, s.srv.dbURL, fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', 'pgoutput')", floorSlot)); err != nil {
		return nil, fmt.Errorf("create floor slot: %w", err)
	}
	bin, err := pgRecvlogical()
	if err != nil {
		return nil, err
	}
	f := &floor{seen: make(chan struct{}), exited: make(chan struct{}), stopRead: make(chan struct{}), readDone: make(chan struct{}),
		outPath: filepath.Join(s.dir, "pg_recvlogical.out")}
	if f.startLSN, err = currentLSN(ctx, s.srv.dbURL); err != nil {
		return nil, err
	}
	if err := os.WriteFile(f.outPath, nil, 0o644); err != nil {
		return nil, fmt.Errorf("create pg_recvlogical output: %w", err)
	}
	out, err := os.Open(f.outPath)
	if err != nil {
		return nil, fmt.Errorf("open pg_recvlogical output: %w", err)
	}
	f.cmd = exec.Command(bin,
		"-h", "127.0.0.1", "-p", strconv.Itoa(s.srv.pg.Port), "-U", "postgres", "-d", benchDB,
		"-S", floorSlot, "--start", "--no-loop", "-f", f.outPath,
		"-P", "pgoutput", "-o", "proto_version=2", "-o", "publication_names="+floorPublication,
		"--fsync-interval=0", "--status-interval=1")
	f.cmd.SysProcAttr = ownSession()
	stderrPath := filepath.Join(s.dir, "pg_recvlogical.log")
	logFile, err := os.Create(stderrPath)
	if err != nil {
		return nil, fmt.Errorf("create pg_recvlogical log: %w", err)
	}
	f.cmd.Stdout, f.cmd.Stderr = logFile, logFile
	if err := f.cmd.Start(); err != nil {
		_ = logFile.Close()
		_ = out.Close()
		return nil, fmt.Errorf("start pg_recvlogical: %w", err)
	}
	go func() {
		defer close(f.exited)
		defer logFile.Close()
		_ = f.cmd.Wait()
	}()
	go func() {
		defer close(f.readDone)
		defer out.Close()
		f.watch(out)
	}()
	if err := waitSlotActive(ctx, s.srv.dbURL, floorSlot, f.exited, stderrPath); err != nil {
		_ = f.stop(ctx, s.srv.dbURL)
		return nil, err
	}
	return f, nil
}

// pgRecvlogical finds the binary of the Debian postgresql-client package.
func pgRecvlogical() (string, error) {
	for _, p := range []string{"/usr/lib/postgresql/15/bin/pg_recvlogical", "/usr/bin/pg_recvlogical"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("pg_recvlogical"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("pg_recvlogical not found (install postgresql-client-15)")
}

// watch polls the output file's tail every millisecond until the COMMIT
// is seen or stop is called.
func (f *floor) watch(out *os.File) {
	const commitLen = 26 + 1 // the message and pg_recvlogical's "\n"
	tail := make([]byte, commitLen)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var size int64
	for {
		select {
		case <-f.stopRead:
			return
		case <-tick.C:
		}
		st, err := out.Stat()
		if err != nil || st.Size() == size {
			continue
		}
		now := time.Now()
		size = st.Size()
		f.mu.Lock()
		f.bytes = size
		f.mu.Unlock()
		if size < commitLen {
			continue
		}
		if _, err := out.ReadAt(tail, size-commitLen); err != nil {
			continue
		}
		if tail[0] != 'C' || tail[1] != 0 || tail[commitLen-1] != '\n' {
			continue
		}
		commit := binary.BigEndian.Uint64(tail[2:10])
		end := binary.BigEndian.Uint64(tail[10:18])
		if commit > f.startLSN && end > commit {
			f.mu.Lock()
			f.at, f.endLSN = now, end
			f.mu.Unlock()
			close(f.seen)
			return
		}
	}
}

// result returns when the commit was seen, its end LSN and the bytes read.
func (f *floor) result() (time.Time, uint64, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.at, f.endLSN, f.bytes
}

// stop ends pg_recvlogical (SIGINT, then SIGKILL) and drops its slot.
func (f *floor) stop(ctx context.Context, dbURL string) error {
	close(f.stopRead)
	<-f.readDone
	_ = f.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-f.exited:
	case <-time.After(10 * time.Second):
		_ = f.cmd.Process.Kill()
		<-f.exited
	}
	return dropSlot(ctx, dbURL, floorSlot)
}
