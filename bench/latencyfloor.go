package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

const latencyFloorSlot = "bench_floor_latency"

// latencyFloor is what the steady workload's latency is measured against:
// the same pgbench run read by pg_recvlogical alone, with test_decoding and
// include-timestamp so that each COMMIT line carries its commit time. The
// suite polls the output file every millisecond and takes a line's latency
// as the poll that found it minus its commit time: the walsender's own
// delay on this machine at this rate, plus up to a millisecond.
type latencyFloor struct {
	P50MS    float64 `json:"p50_ms"`
	P99MS    float64 `json:"p99_ms"`
	P999MS   float64 `json:"p999_ms"`
	MaxMS    float64 `json:"max_ms"`
	Received int     `json:"received"`
}

// steadyFloor runs pgbench with args while only pg_recvlogical reads, then
// moves the daemon's slot (idle meanwhile) past that WAL.
func (s *suite) steadyFloor(ctx context.Context, name string, args pgbenchArgs) (fl latencyFloor, err error) {
	if err := s.srv.settle(ctx); err != nil {
		return fl, err
	}
	if _, err := query(ctx, s.srv.dbURL, fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', 'test_decoding')", latencyFloorSlot)); err != nil {
		return fl, fmt.Errorf("create latency floor slot: %w", err)
	}
	defer func() {
		if dropErr := dropSlot(context.WithoutCancel(ctx), s.srv.dbURL, latencyFloorSlot); dropErr != nil && err == nil {
			err = dropErr
		}
	}()
	out, stop, err := s.startFloorReader(ctx, name)
	if err != nil {
		return fl, err
	}
	defer stop()
	lat, err := s.watchFloor(ctx, name, args, out)
	if err != nil {
		return fl, err
	}
	slices.Sort(lat)
	fl.Received = len(lat)
	fl.P50MS, fl.P99MS, fl.P999MS = percentileMS(lat, 0.50), percentileMS(lat, 0.99), percentileMS(lat, 0.999)
	if len(lat) > 0 {
		fl.MaxMS = float64(lat[len(lat)-1]) / 1000
	}
	if _, err := query(ctx, s.srv.dbURL, fmt.Sprintf(
		"SELECT pg_replication_slot_advance(slot_name, pg_current_wal_lsn()) FROM pg_replication_slots WHERE slot_name = '%s'", daemonSlot)); err != nil {
		return fl, fmt.Errorf("advance the daemon's slot: %w", err)
	}
	return fl, nil
}

// startFloorReader starts pg_recvlogical on the floor's slot, writing to
// a file of the work directory, and waits until it streams; it returns
// that file open for reading and how to stop it all.
func (s *suite) startFloorReader(ctx context.Context, name string) (out *os.File, stop func(), err error) {
	bin, err := pgRecvlogical()
	if err != nil {
		return nil, nil, err
	}
	outPath := filepath.Join(s.dir, name+"-floor.out")
	if err := os.WriteFile(outPath, nil, 0o644); err != nil {
		return nil, nil, fmt.Errorf("create pg_recvlogical output: %w", err)
	}
	if out, err = os.Open(outPath); err != nil {
		return nil, nil, fmt.Errorf("open pg_recvlogical output: %w", err)
	}
	cmd := exec.Command(bin,
		"-h", "127.0.0.1", "-p", strconv.Itoa(s.srv.pg.Port), "-U", "postgres", "-d", benchDB,
		"-S", latencyFloorSlot, "--start", "--no-loop", "-f", outPath,
		"-o", "include-timestamp=on", "-o", "skip-empty-xacts=on", "--fsync-interval=0", "--status-interval=1")
	cmd.SysProcAttr = ownSession()
	logPath := filepath.Join(s.dir, name+"-floor.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		out.Close()
		return nil, nil, fmt.Errorf("create pg_recvlogical log: %w", err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		out.Close()
		return nil, nil, fmt.Errorf("start pg_recvlogical: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
		out.Close()
	}
	if err := waitSlotActive(ctx, s.srv.dbURL, latencyFloorSlot, exited, logPath); err != nil {
		stop()
		return nil, nil, err
	}
	return out, stop, nil
}

// watchFloor runs pgbench while following pg_recvlogical's output in out,
// then waits until every commit was seen or none came for drainQuiet; it
// returns each commit's latency in µs.
func (s *suite) watchFloor(ctx context.Context, name string, args pgbenchArgs, out *os.File) ([]int64, error) {
	w := &commitWatcher{f: out}
	done := make(chan struct{})
	watched := make(chan struct{})
	go func() { defer close(watched); w.run(done) }()
	stopWatching := func() {
		close(done)
		<-watched
	}
	run, err := s.runPgbench(ctx, name+"-floor", args)
	if err != nil {
		stopWatching()
		return nil, err
	}
	last, lastChange := -1, time.Now()
	for time.Since(lastChange) < drainQuiet {
		n := int(w.seen.Load())
		if int64(n) >= run.Processed {
			break
		}
		if n != last {
			last, lastChange = n, time.Now()
		}
		select {
		case <-ctx.Done():
			stopWatching()
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	stopWatching()
	if w.err != nil {
		return nil, w.err
	}
	return w.latencies, nil
}

// dropSlot drops slot, retrying while its walsender, just stopped, still
// holds it.
func dropSlot(ctx context.Context, dbURL, slot string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := query(ctx, dbURL, fmt.Sprintf(
			"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '%s'", slot))
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("drop slot %s: %w", slot, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitSlotActive waits until pg_recvlogical streams from slot.
func waitSlotActive(ctx context.Context, dbURL, slot string, exited <-chan struct{}, logPath string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		active, err := queryValue(ctx, dbURL, fmt.Sprintf("SELECT active FROM pg_replication_slots WHERE slot_name = '%s'", slot))
		if err == nil && active == "t" {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("pg_recvlogical exited: %s", tailFile(logPath, 10))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pg_recvlogical not streaming after 30s: %s", tailFile(logPath, 10))
		}
	}
}

// commitWatcher reads test_decoding output as it grows and records, for
// each "COMMIT <xid> (at <time>)" line, the time it was found minus the
// commit time, in microseconds.
type commitWatcher struct {
	f         *os.File
	pending   []byte
	latencies []int64
	seen      atomic.Int64 // len(latencies), for other goroutines
	err       error
}

func (w *commitWatcher) run(done <-chan struct{}) {
	buf := make([]byte, 1<<20)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			if err := w.read(buf, time.Now()); err != nil && w.err == nil { // what arrived last
				w.err = err
			}
			return
		case now := <-tick.C:
			if err := w.read(buf, now); err != nil {
				w.err = err
				return
			}
			w.seen.Store(int64(len(w.latencies)))
		}
	}
}

// commitTimeLayout is test_decoding's timestamp under the default DateStyle.
const commitTimeLayout = "2006-01-02 15:04:05.999999-07"

func (w *commitWatcher) read(buf []byte, now time.Time) error {
	for {
		n, err := w.f.Read(buf)
		w.pending = append(w.pending, buf[:n]...)
		for {
			i := bytes.IndexByte(w.pending, '\n')
			if i < 0 {
				break
			}
			line := w.pending[:i]
			w.pending = w.pending[i+1:]
			if !bytes.HasPrefix(line, []byte("COMMIT ")) {
				continue
			}
			at := bytes.Index(line, []byte("(at "))
			if at < 0 || line[len(line)-1] != ')' {
				return fmt.Errorf("latency floor: COMMIT line without a timestamp: %q (include-timestamp not honoured?)", line)
			}
			t, perr := time.Parse(commitTimeLayout, string(line[at+4:len(line)-1]))
			if perr != nil {
				return fmt.Errorf("latency floor: %w", perr)
			}
			w.latencies = append(w.latencies, now.Sub(t).Microseconds())
		}
		if len(w.pending) == 0 {
			w.pending = nil
		}
		if err == io.EOF || n < len(buf) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("latency floor: read: %w", err)
		}
	}
}
