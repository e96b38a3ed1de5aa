package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cachewire/invalidator/internal/testsrv"
)

const (
	readyTimeout = time.Minute
	stopTimeout  = 30 * time.Second
)

// daemon is one run of the invalidator binary.
type daemon struct {
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	addr    string
	done    chan struct{}
	err     error
}

// startDaemon runs `invalidator run` against the suite's servers with the
// given extra INVALIDATOR_* settings and waits until /readyz answers 200.
// Its output goes to a log file in the work directory.
func (s *suite) startDaemon(ctx context.Context, name string, extraEnv ...string) (*daemon, error) {
	port, err := testsrv.FreePort()
	if err != nil {
		return nil, err
	}
	d := &daemon{addr: fmt.Sprintf("127.0.0.1:%d", port), done: make(chan struct{})}
	d.logPath = filepath.Join(s.dir, "daemon-"+name+".log")
	if d.logFile, err = os.Create(d.logPath); err != nil {
		return nil, fmt.Errorf("create daemon log: %w", err)
	}
	env := []string{
		"INVALIDATOR_POSTGRES_URL=" + s.srv.dbURL,
		"INVALIDATOR_REDIS_URL=" + s.srv.redis.URL(),
		"INVALIDATOR_RULES=" + s.srv.rules,
		"INVALIDATOR_SLOT=" + daemonSlot,
		"INVALIDATOR_PUBLICATION=" + daemonPublication,
		"INVALIDATOR_HTTP_ADDR=" + d.addr,
		"INVALIDATOR_LOG_LEVEL=info",
	}
	d.cmd = exec.Command(s.bin, "run")
	d.cmd.Env = append(withoutInvalidatorEnv(os.Environ()), append(append(env, s.opts.daemonEnv...), extraEnv...)...)
	d.cmd.Stdout, d.cmd.Stderr = d.logFile, d.logFile
	d.cmd.SysProcAttr = ownSession()
	if err := d.cmd.Start(); err != nil {
		_ = d.logFile.Close()
		return nil, fmt.Errorf("start daemon: %w", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	if err := d.waitReady(ctx); err != nil {
		d.stop()
		return nil, err
	}
	return d, nil
}

// withoutInvalidatorEnv drops the caller's own INVALIDATOR_* variables.
func withoutInvalidatorEnv(env []string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, "INVALIDATOR_") {
			out = append(out, e)
		}
	}
	return out
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

func (d *daemon) waitReady(ctx context.Context) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			return fmt.Errorf("daemon exited before ready (%v); log:\n%s", d.err, tailFile(d.logPath, 20))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		resp, err := client.Get("http://" + d.addr + "/readyz")
		if err != nil {
			continue
		}
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
	}
	return fmt.Errorf("daemon not ready after %s; log:\n%s", readyTimeout, tailFile(d.logPath, 20))
}

// alive fails if the daemon has exited.
func (d *daemon) alive() error {
	select {
	case <-d.done:
		return fmt.Errorf("daemon exited (%v); log:\n%s", d.err, tailFile(d.logPath, 20))
	default:
		return nil
	}
}

// stop sends SIGTERM (SIGKILL after stopTimeout) and waits for the exit.
func (d *daemon) stop() error {
	defer d.logFile.Close()
	select {
	case <-d.done:
		return d.err
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(stopTimeout):
		_ = d.cmd.Process.Kill()
		<-d.done
		return fmt.Errorf("daemon did not stop within %s of SIGTERM", stopTimeout)
	}
	var exit *exec.ExitError
	if errors.As(d.err, &exit) {
		return fmt.Errorf("daemon exited with %v; log:\n%s", d.err, tailFile(d.logPath, 20))
	}
	return d.err
}

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
