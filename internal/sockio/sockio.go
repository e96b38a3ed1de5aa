// Package sockio reads and writes a socket without telling the Go
// scheduler that a system call may block.
//
// Every read and write of a net.Conn enters the runtime's system-call
// path, and that path wakes the runtime's monitor thread (sysmon)
// whenever it is in its deep sleep, which it enters each time every P
// is idle. A daemon that handles one small message at a time goes idle
// between messages, so each message paid a futex wake-up of sysmon, and
// sysmon then polled every 20 µs until the program was idle again: on
// one P, in the profiles of 10,000 single-row transactions a second,
// 15-18 % of the daemon's CPU and two more context switches a message,
// taken from PostgreSQL and Redis on the same CPUs.
//
// The sockets are non-blocking (the runtime's poller waits for them),
// so a read or write returns at once: Conn makes it as a raw system
// call, which the scheduler never sees, and waits in the poller as
// net.Conn does when the socket is not ready. Deadlines, Close and the
// addresses are the wrapped connection's. The race detector does not see
// the kernel write into a read buffer, as it does for net.Conn.
package sockio

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// Conn is a TCP or Unix socket whose Read and Write are raw system calls.
type Conn struct {
	net.Conn // the socket: deadlines, Close, addresses
	raw      syscall.RawConn
	network  string

	r, w direction
}

// direction is the Read (or the Write) in progress: mu makes Reads take
// turns, as they share these fields. The callbacks are made once, so
// that a call allocates nothing.
type direction struct {
	mu   sync.Mutex
	buf  []byte
	n    int
	err  error                          // the system call's
	step func(fd uintptr) bool          // the poller's callback: false is "not ready, wait"
	wait func(func(uintptr) bool) error // the RawConn's Read or Write
}

// do runs one call over b: the callback until it is done, waiting in the
// poller meanwhile. It returns what was moved and the poller's or the
// system call's error.
func (d *direction) do(b []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.buf, d.n, d.err = b, 0, nil
	err := d.wait(d.step)
	if err == nil {
		err = d.err
	}
	n := d.n
	d.buf, d.err = nil, nil
	return n, err
}

// Wrap returns c as a Conn when it is a socket the poller waits for
// (*net.TCPConn, *net.UnixConn), and c itself otherwise (TLS, pipes).
// Wrap the socket before TLS goes on top of it.
func Wrap(c net.Conn) net.Conn {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return c
	}
	if !rawIO {
		return c
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	w := &Conn{Conn: c, raw: raw, network: "tcp"}
	if _, unix := c.(*net.UnixConn); unix {
		w.network = "unix"
	}
	w.r.step, w.r.wait = w.read, raw.Read
	w.w.step, w.w.wait = w.write, raw.Write
	return w
}

// NetConn returns the wrapped socket (for socket options).
func (c *Conn) NetConn() net.Conn { return c.Conn }

// SyscallConn returns the socket's raw connection, as *net.TCPConn does:
// go-redis checks a pooled connection through it before reusing it.
// Conn buffers nothing, so the socket's state is the connection's.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.raw, nil }

// Read reads what has arrived, waiting in the poller until something
// has; at the end of the stream it returns io.EOF.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, err := c.r.do(b)
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of b, waiting in the poller while the socket's
// buffer is full.
func (c *Conn) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, err := c.w.do(b)
	if err != nil {
		return n, c.opError("write", err)
	}
	return n, nil
}

// read is the Read's callback.
func (c *Conn) read(fd uintptr) bool {
	for {
		n, err := rawRead(fd, c.r.buf)
		switch err {
		case nil:
			c.r.n = n
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			c.r.err = os.NewSyscallError("read", err)
			return true
		}
	}
}

// write is the Write's callback.
func (c *Conn) write(fd uintptr) bool {
	for c.w.n < len(c.w.buf) {
		n, err := rawWrite(fd, c.w.buf[c.w.n:])
		switch err {
		case nil:
			c.w.n += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.w.err = os.NewSyscallError("write", err)
			return true
		}
	}
	return true
}

// opError reports err as net.Conn does, so that callers that look for
// a timeout (net.Error, os.ErrDeadlineExceeded) or net.ErrClosed find it;
// the poller's own wrapping (op "raw-read") is taken off.
func (c *Conn) opError(op string, err error) error {
	var inner *net.OpError
	if errors.As(err, &inner) {
		err = inner.Err
	}
	return &net.OpError{Op: op, Net: c.network, Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Dialer returns a dial function for go-redis and resp: TCP with
// keep-alive probes after 30 s idle (3, 5 s apart, as go-redis's own
// dialer), the socket wrapped, then TLS on top of it when conf is set
// (ServerName from addr unless conf names one). timeout (5 s when not
// set) bounds the dial and the TLS handshake together.
func Dialer(timeout time.Duration, conf *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		nd := &net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3}}
		raw, err := nd.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if conf == nil {
			return Wrap(raw), nil
		}
		c := conf
		if c.ServerName == "" {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				host = addr
			}
			c = conf.Clone()
			c.ServerName = host
		}
		tc := tls.Client(Wrap(raw), c)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			return nil, err
		}
		return tc, nil
	}
}

// WrapDial returns dial with the socket it opens wrapped (a TLS
// connection it returns is left as it is): for pgconn's DialFunc, under
// which pgconn puts TLS, and for a dialer given to go-redis.
func WrapDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return Wrap(c), nil
	}
}

// NATSDialer dials as nats.go's own dialer does (TCP with a timeout; it
// puts TLS on top itself) and wraps the socket; it is a nats.CustomDialer.
type NATSDialer struct{ Timeout time.Duration }

// Dial implements nats.CustomDialer.
func (d NATSDialer) Dial(network, address string) (net.Conn, error) {
	c, err := (&net.Dialer{Timeout: d.Timeout}).Dial(network, address)
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}
