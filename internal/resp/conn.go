package resp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// Options say how to reach and enter one Redis server.
type Options struct {
	Network, Addr string
	// Dial opens the connection (TLS included, if any).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Username and Password authenticate with AUTH when Password is set
	// (AUTH with the password alone when Username is empty).
	Username, Password string
	DB                 int    // SELECTed when not 0
	ClientName         string // CLIENT SETNAME, when set
	// ReadTimeout and WriteTimeout bound each wait for replies and each
	// write (0: no bound but the context's).
	ReadTimeout, WriteTimeout time.Duration
	// Sentinel, when set, makes Dial connect to the master the sentinels
	// name at that moment (Addr is ignored), and only if that server says
	// it is a master; Dial also opens the connections to the sentinels.
	Sentinel *Sentinel
}

// Conn is one connection to a Redis server. It is not safe for concurrent
// use. After any error other than an error reply it is out of step with
// the server and must be closed.
type Conn struct {
	nc   net.Conn
	br   *bufio.Reader
	opts Options
}

// readBuffer is the size of the reply buffer (a reply line must fit).
const readBuffer = 32 << 10

// Dial connects, authenticates and selects the database.
func Dial(ctx context.Context, o Options) (*Conn, error) {
	if o.Sentinel != nil {
		addr, err := o.Sentinel.MasterAddr(ctx, o.Dial)
		if err != nil {
			return nil, fmt.Errorf("find the redis master: %w", err)
		}
		o.Addr = addr
	}
	nc, err := o.Dial(ctx, o.Network, o.Addr)
	if err != nil {
		return nil, fmt.Errorf("connect to redis at %s: %w", o.Addr, err)
	}
	c := &Conn{nc: nc, br: bufio.NewReaderSize(nc, readBuffer), opts: o}
	if err := c.handshake(ctx); err != nil {
		_ = nc.Close()
		return nil, err
	}
	if o.Sentinel != nil {
		// Mid-failover a sentinel may still name a demoted master, or
		// name the replica it promotes a moment before it accepts writes.
		role, err := c.Role(ctx)
		if err == nil && role != "master" {
			err = fmt.Errorf("redis at %s, named master %q by the sentinels, is a %s: not a master", o.Addr, o.Sentinel.Master, role)
		}
		if err != nil {
			_ = nc.Close()
			return nil, err
		}
	}
	return c, nil
}

// handshake sends what the connection needs before any command: AUTH, SELECT
// and CLIENT SETNAME, each only when configured.
func (c *Conn) handshake(ctx context.Context) error {
	var b []byte
	var names []string
	o := &c.opts
	if o.Password != "" {
		if o.Username != "" {
			b = AppendCommand(b, 3)
			b = AppendString(AppendString(AppendString(b, "AUTH"), o.Username), o.Password)
		} else {
			b = AppendString(AppendCommand(b, 2), "AUTH")
			b = AppendString(b, o.Password)
		}
		names = append(names, "AUTH")
	}
	if o.DB != 0 {
		b = AppendString(AppendCommand(b, 2), "SELECT")
		b = AppendInt(b, int64(o.DB))
		names = append(names, "SELECT")
	}
	if o.ClientName != "" {
		b = AppendString(AppendString(AppendCommand(b, 3), "CLIENT"), "SETNAME")
		b = AppendString(b, o.ClientName)
		names = append(names, "CLIENT SETNAME")
	}
	if len(names) == 0 {
		return nil
	}
	if err := c.Write(ctx, b); err != nil {
		return err
	}
	var first error
	err := c.ReadReplies(ctx, len(names), func(i int, r Reply) {
		if r.Kind == ErrorReply && first == nil {
			first = fmt.Errorf("redis %s at %s: %w", names[i], o.Addr, r.Err)
		}
	})
	if err != nil {
		return err
	}
	return first
}

// Write writes b (whole commands, or the start of a command whose rest
// follows in the next Write).
func (c *Conn) Write(ctx context.Context, b []byte) error {
	stop, err := c.begin(ctx, c.nc.SetWriteDeadline, c.opts.WriteTimeout)
	if err != nil {
		return fmt.Errorf("redis write: %w", err)
	}
	_, err = c.nc.Write(b)
	return c.done(ctx, stop, "redis write", err)
}

// begin starts an I/O: it sets the deadline with set, from timeout and
// ctx's deadline, and arranges for ctx ending to interrupt the I/O. The
// caller ends it with done.
func (c *Conn) begin(ctx context.Context, set func(time.Time) error, timeout time.Duration) (stop func() bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	stop = c.interruptOn(ctx)
	if err := set(c.deadline(ctx, timeout)); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}

// done ends an I/O under interruptOn. When ctx ended meanwhile, the
// interruption may still set a past deadline at any moment: the call
// fails with ctx's error, and the connection must not be used again.
func (c *Conn) done(ctx context.Context, stop func() bool, what string, err error) error {
	if !stop() {
		return fmt.Errorf("%s: %w", what, context.Cause(ctx))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, c.cause(ctx, err))
	}
	return nil
}

// ReadReplies reads the replies of n commands written, in order, calling fn
// with each. An error reply is handed to fn like any other; an error
// returned is of the connection (I/O, protocol or ctx).
func (c *Conn) ReadReplies(ctx context.Context, n int, fn func(i int, r Reply)) error {
	stop, err := c.begin(ctx, c.nc.SetReadDeadline, c.opts.ReadTimeout)
	if err != nil {
		return fmt.Errorf("redis read: %w", err)
	}
	for i := range n {
		r, err := ReadReply(c.br)
		if err != nil {
			return c.done(ctx, stop, fmt.Sprintf("redis read (reply %d of %d)", i+1, n), err)
		}
		fn(i, r)
	}
	return c.done(ctx, stop, "redis read", nil)
}

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

// deadline is the earlier of ctx's deadline and timeout from now (zero
// time when there is neither).
func (c *Conn) deadline(ctx context.Context, timeout time.Duration) time.Time {
	var t time.Time
	if timeout > 0 {
		t = time.Now().Add(timeout)
	}
	if d, ok := ctx.Deadline(); ok && (t.IsZero() || d.Before(t)) {
		t = d
	}
	return t
}

// interruptOn makes a blocked read or write return when ctx ends.
func (c *Conn) interruptOn(ctx context.Context) (stop func() bool) {
	if ctx.Done() == nil {
		return func() bool { return true }
	}
	return context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
}

// cause is ctx's error when ctx ending (or its deadline) stopped the I/O,
// else err.
func (c *Conn) cause(ctx context.Context, err error) error {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return err
}
