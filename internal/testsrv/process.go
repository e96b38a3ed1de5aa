package testsrv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// readyTimeout bounds how long a server may take to accept clients.
	readyTimeout = 30 * time.Second
	// stopTimeout bounds a graceful shutdown in Stop before the server's
	// processes are killed.
	stopTimeout = 30 * time.Second
	// closeTimeout bounds a graceful shutdown in Close before the server's
	// processes are killed.
	closeTimeout = 10 * time.Second
	// goneTimeout bounds the wait for killed processes to disappear.
	goneTimeout = 10 * time.Second
	// pollInterval is the pause between two readiness or liveness probes.
	pollInterval = 20 * time.Millisecond
	// probeTimeout bounds one readiness probe.
	probeTimeout = 2 * time.Second
	// startAttempts is how often a first start is tried with fresh ports
	// when the server exits during startup (typically a port taken between
	// FreePort and the server's bind).
	startAttempts = 3
	// logTailBytes is how much of a server log goes into error messages.
	logTailBytes = 4096
)

// exitedError reports a server process that exited while we were waiting for
// it to become ready.
type exitedError struct {
	name   string
	status string
	tail   string
}

func (e *exitedError) Error() string {
	return fmt.Sprintf("%s exited during startup (%s)\n%s", e.name, e.status, e.tail)
}

// exitedEarly reports whether err says a server exited during startup.
func exitedEarly(err error) bool {
	var e *exitedError
	return errors.As(err, &e)
}

// firstStart makes a server's first start with start, which picks free
// ports and starts the process: when the process exits during startup
// (typically a port taken meanwhile) it is tried again, startAttempts
// times in all. On failure the process is killed; what names the server
// in the error.
func (p *process) firstStart(what string, start func() error) error {
	for attempt := 1; ; attempt++ {
		err := start()
		if err == nil {
			return nil
		}
		if !exitedEarly(err) || attempt == startAttempts {
			_ = p.kill()
			return fmt.Errorf("start %s (attempt %d): %w", what, attempt, err)
		}
	}
}

// process is one server child process that can be started, stopped, killed
// and started again with the same log file. Its methods are safe for
// concurrent use, but start/stop/kill of the same process are meant to be
// called from one goroutine at a time.
type process struct {
	name    string
	path    string
	dir     string // working directory of the child
	logPath string
	env     []string
	cred    *syscall.Credential // nil: run as the current user

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when cmd.Wait returned
	waitErr  error
	logStart int64 // log size when the current run started
}

// start runs the binary with args in its own process group, with stdout and
// stderr appended to the log file. It does not wait for readiness.
func (p *process) start(args []string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s already running (pid %d)", p.name, p.cmd.Process.Pid)
		}
	}

	logFile, err := os.OpenFile(p.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open %s log: %w", p.name, err)
	}
	defer logFile.Close() // the child has its own copy of the descriptor
	fmt.Fprintf(logFile, "\n=== testsrv: %s %s ===\n", p.path, strings.Join(args, " "))
	info, err := logFile.Stat()
	if err != nil {
		return fmt.Errorf("stat %s log: %w", p.name, err)
	}

	cmd := exec.Command(p.path, args...)
	cmd.Dir = p.dir
	cmd.Env = p.env
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// A session of its own, as a service has: its own process group (killed
	// whole at the end), and, where the kernel groups tasks by session for
	// scheduling (sched_autogroup_enabled), its own share of the CPU rather
	// than one shared with the test or benchmark that started it.
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setsid:     true,
		Pdeathsig:  syscall.SIGKILL,
		Credential: p.cred,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.waitErr, p.logStart = cmd, done, nil, info.Size()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// current returns the running command and its done channel, or nil values if
// the process was never started.
func (p *process) current() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.done
}

// running reports whether the main process is alive (not yet reaped).
func (p *process) running() bool {
	_, done := p.current()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// waitReady calls probe until it succeeds. It fails fast with an
// *exitedError if the process exits, and gives up after timeout.
func (p *process) waitReady(timeout time.Duration, probe func(ctx context.Context) error) error {
	_, done := p.current()
	if done == nil {
		return fmt.Errorf("%s was never started", p.name)
	}
	deadline := time.Now().Add(timeout)
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	// Cancel a probe in flight as soon as the process exits.
	exitCtx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		select {
		case <-done:
			stop()
		case <-exitCtx.Done():
		}
	}()
	for {
		ctx, cancel := context.WithDeadline(exitCtx, minTime(time.Now().Add(probeTimeout), deadline))
		err := probe(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return &exitedError{name: p.name, status: p.exitStatus(), tail: p.logTail()}
		default:
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%s not ready after %s: %w\n%s", p.name, timeout, err, p.logTail())
		}
		select {
		case <-done:
			return &exitedError{name: p.name, status: p.exitStatus(), tail: p.logTail()}
		case <-ticker.C:
		}
	}
}

// exitStatus describes how the last run ended.
func (p *process) exitStatus() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waitErr != nil {
		return p.waitErr.Error()
	}
	return "exit status 0"
}

// stop sends sig to the main process only (so that it can shut down its
// children in order) and waits up to timeout for it to exit. If it does not,
// it is killed with all its descendants and its process group, and killed is
// true. Either way stop returns once none of those processes is left.
// Stopping a process that is not running only cleans up leftovers of its
// process group.
func (p *process) stop(sig syscall.Signal, timeout time.Duration) (killed bool, err error) {
	cmd, done := p.current()
	if cmd == nil {
		return false, nil
	}
	pid := cmd.Process.Pid
	select {
	case <-done:
	default:
		if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			killed = true
			break
		}
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		select {
		case <-done:
		case <-timer.C:
			killed = true
		}
	}
	return killed, p.killAll(pid, done)
}

// gracefulStop is stop that reports a process that had to be killed as an
// error, with the log's tail.
func (p *process) gracefulStop(sig syscall.Signal, timeout time.Duration) error {
	killed, err := p.stop(sig, timeout)
	if err != nil {
		return err
	}
	if killed {
		return fmt.Errorf("%s did not exit within %s of %v, killed it\n%s", p.name, timeout, sig, p.logTail())
	}
	return nil
}

// kill sends SIGKILL to the main process, all its descendants and its
// process group at once, as a crash would, and returns once every one of them
// is gone.
func (p *process) kill() error {
	cmd, done := p.current()
	if cmd == nil {
		return nil
	}
	return p.killAll(cmd.Process.Pid, done)
}

// killAll SIGKILLs the main process pid together with its descendants (found
// through /proc and frozen first, so none can fork meanwhile; PostgreSQL's
// children call setsid and so leave the process group) and with its process
// group (for grandchildren already orphaned). It returns once the main process
// is reaped and none of those processes is left.
func (p *process) killAll(pid int, done chan struct{}) error {
	tree := freezeTree(pid)
	for _, q := range tree {
		_ = syscall.Kill(q.pid, syscall.SIGKILL)
		if q.pgid == q.pid && q.pid != pid {
			_ = syscall.Kill(-q.pid, syscall.SIGKILL)
		}
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill process group %d of %s: %w", pid, p.name, err)
	}
	timer := time.NewTimer(goneTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		return fmt.Errorf("%s (pid %d) still not reaped %s after SIGKILL", p.name, pid, goneTimeout)
	}
	deadline := time.Now().Add(goneTimeout)
	for {
		left := groupAlive(pid)
		for _, q := range tree {
			left = left || q.alive()
		}
		if !left {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("processes of %s (pid %d) still alive %s after SIGKILL", p.name, pid, goneTimeout)
		}
		time.Sleep(pollInterval)
	}
}

// logTail returns the end of the log written since the current run started,
// for error messages.
func (p *process) logTail() string {
	p.mu.Lock()
	start := p.logStart
	p.mu.Unlock()
	f, err := os.Open(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no %s log: %v)", p.name, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(stat %s log: %v)", p.name, err)
	}
	from := max(start, info.Size()-logTailBytes)
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return fmt.Sprintf("(seek %s log: %v)", p.name, err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(read %s log: %v)", p.name, err)
	}
	return fmt.Sprintf("--- %s log tail (%s) ---\n%s--- end of %s log ---", p.name, p.logPath, b, p.name)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// cleanEnv returns the current environment without variables that would
// steer the servers or their client libraries (PG*, REDIS*, NATS*), with a
// fixed locale.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "PG"), strings.HasPrefix(name, "REDIS"),
			strings.HasPrefix(name, "NATS"), strings.HasPrefix(name, "LC_"), name == "LANG":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// findBinary returns the first of candidates that is an executable file, or
// the result of an exec.LookPath of name.
func findBinary(name string, candidates ...string) (string, error) {
	for _, c := range candidates {
		if info, err := os.Stat(c); err == nil && info.Mode().IsRegular() && info.Mode().Perm()&0o111 != 0 {
			return c, nil
		}
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("find %s (tried %s and $PATH): %w", name, strings.Join(candidates, ", "), err)
	}
	return path, nil
}

// stopForTest stops a running server for a test's Stop: it fails the test if
// the server is not running, or if it did not exit in time (it is then
// killed).
func (p *process) stopForTest(tb testing.TB, name string, sig syscall.Signal) {
	tb.Helper()
	if !p.running() {
		tb.Fatalf("testsrv: stop %s: not running", name)
	}
	if err := p.gracefulStop(sig, stopTimeout); err != nil {
		tb.Fatalf("testsrv: stop %s: %v", name, err)
	}
}

// closeAndRemove is a server's Close: stop with sig (killing the process
// after closeTimeout is not an error), then remove dir.
func (p *process) closeAndRemove(name string, sig syscall.Signal, dir string) error {
	var errs []error
	if _, err := p.stop(sig, closeTimeout); err != nil {
		errs = append(errs, fmt.Errorf("stop %s: %w", name, err))
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s dir: %w", name, err))
	}
	return errors.Join(errs...)
}
