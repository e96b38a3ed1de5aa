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
// addresses are the wrapped connection's.
package sockio

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"syscall"
	"time"
)

// Conn is a TCP or Unix socket whose Read and Write are raw system calls.
type Conn struct {
	net.Conn // the socket: deadlines, Close, addresses
	raw      syscall.RawConn

	// the call in progress (one Read and one Write at a time, as a
	// net.Conn is used); the callbacks are made once, so that a call
	// allocates nothing
	rbuf, wbuf []byte
	rn, wn     int
	rerr, werr error
	readFn     func(fd uintptr) bool
	writeFn    func(fd uintptr) bool
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
	w := &Conn{Conn: c, raw: raw}
	w.readFn, w.writeFn = w.read, w.write
	return w
}

// NetConn returns the wrapped socket (for socket options).
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Read reads what has arrived, waiting in the poller until something
// has; at the end of the stream it returns io.EOF.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.rbuf, c.rn, c.rerr = b, 0, nil
	err := c.raw.Read(c.readFn)
	n, rerr := c.rn, c.rerr
	c.rbuf, c.rerr = nil, nil
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case rerr != nil:
		return 0, c.opError("read", rerr)
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
	c.wbuf, c.wn, c.werr = b, 0, nil
	err := c.raw.Write(c.writeFn)
	n, werr := c.wn, c.werr
	c.wbuf, c.werr = nil, nil
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case werr != nil:
		return n, c.opError("write", werr)
	}
	return n, nil
}

// read is the poller's callback: false means "not ready, wait".
func (c *Conn) read(fd uintptr) bool {
	for {
		n, err := rawRead(fd, c.rbuf)
		switch err {
		case nil:
			c.rn = n
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			c.rerr = err
			return true
		}
	}
}

// write is the poller's callback: false means "full, wait".
func (c *Conn) write(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		n, err := rawWrite(fd, c.wbuf[c.wn:])
		switch err {
		case nil:
			c.wn += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werr = err
			return true
		}
	}
	return true
}

// opError reports err as net.Conn does, so that callers that look for
// a timeout (net.Error, os.ErrDeadlineExceeded) or net.ErrClosed find it.
func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Dialer returns a dial function for go-redis and resp: TCP with a
// timeout (5 s when not set) and 5-minute keep-alives, the socket wrapped,
// then TLS on top of it when conf is set (ServerName from addr unless conf
// names one).
func Dialer(timeout time.Duration, conf *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		nd := &net.Dialer{Timeout: timeout, KeepAlive: 5 * time.Minute}
		raw, err := nd.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if conf == nil {
			return Wrap(raw), nil
		}
		c := conf
		if c.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			c = conf.Clone()
			c.ServerName = host
		}
		tc := tls.Client(Wrap(raw), c)
		hctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := tc.HandshakeContext(hctx); err != nil {
			_ = raw.Close()
			return nil, err
		}
		return tc, nil
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
