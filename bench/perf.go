package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// perfRecord is `perf record -g` attached to the daemon (optional, -perf).
type perfRecord struct {
	cmd  *exec.Cmd
	done chan error
}

// startPerf attaches perf to pid when -perf is set; it returns nil otherwise.
func (s *suite) startPerf(ctx context.Context, pid int, name string) (*perfRecord, error) {
	if s.opts.perfDir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(s.opts.perfDir, 0o755); err != nil {
		return nil, fmt.Errorf("perf dir: %w", err)
	}
	// the binary (built with its symbol table under -perf), for perf report
	if err := copyFile(s.bin, filepath.Join(s.opts.perfDir, "invalidator")); err != nil {
		return nil, err
	}
	out := filepath.Join(s.opts.perfDir, name+".perf.data")
	p := &perfRecord{done: make(chan error, 1)}
	p.cmd = exec.Command("perf", "record", "-F", "999", "-g", "-p", strconv.Itoa(pid), "-o", out)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logf, err := os.Create(out + ".log")
	if err != nil {
		return nil, fmt.Errorf("perf log: %w", err)
	}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start perf: %w", err)
	}
	go func() {
		p.done <- p.cmd.Wait()
		_ = logf.Close()
	}()
	select { // perf needs a moment to attach
	case <-time.After(300 * time.Millisecond):
	case <-ctx.Done():
	}
	s.log.printf("perf recording the daemon into %s", out)
	return p, nil
}

// stop ends the recording (SIGINT makes perf write its file).
func (p *perfRecord) stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	return nil
}
