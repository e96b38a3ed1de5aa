package resp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// Sentinel names a master that a group of Redis Sentinels watch: a
// connection made with it goes to the address the sentinels give for
// the master at the time of the dial, and only to a server that says it
// is a master.
type Sentinel struct {
	Addrs  []string // the sentinels, host:port
	Master string   // the master's name in the sentinels' configuration
	// Username and Password authenticate to the sentinels, when set.
	Username, Password string
}

// sentinelTimeout bounds one question to one sentinel, so that a dead or
// partitioned sentinel does not hold up the others.
const sentinelTimeout = 2 * time.Second

// ErrNoMaster is returned when no sentinel could name the master.
var ErrNoMaster = errors.New("no sentinel named the master")

// MasterAddr asks the sentinels in turn for the master's address and
// returns the first answer. dial opens the connection to a sentinel (TLS
// included, if any).
func (s *Sentinel) MasterAddr(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (string, error) {
	var errs []error
	for _, addr := range s.Addrs {
		master, err := s.Ask(ctx, dial, addr)
		if err == nil {
			return master, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("sentinels %v, master %q: %w: %w", s.Addrs, s.Master, ErrNoMaster, errors.Join(errs...))
}

// Ask asks the sentinel at addr for the master's address.
func (s *Sentinel) Ask(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, sentinelTimeout)
	defer cancel()
	c, err := Dial(ctx, Options{Network: "tcp", Addr: addr, Dial: dial, Username: s.Username, Password: s.Password})
	if err != nil {
		return "", fmt.Errorf("sentinel %s: %w", addr, err)
	}
	defer func() { _ = c.Close() }()
	v, err := c.Do(ctx, "SENTINEL", "get-master-addr-by-name", s.Master)
	switch {
	case err != nil:
		return "", fmt.Errorf("sentinel %s: %w", addr, err)
	case v.Kind == ErrorReply:
		return "", fmt.Errorf("sentinel %s: %w", addr, v.Err)
	case v.Kind != Array || v.Nil:
		return "", fmt.Errorf("sentinel %s does not know a master named %q", addr, s.Master)
	case len(v.Elems) != 2 || v.Elems[0].Kind != Bulk || v.Elems[1].Kind != Bulk:
		return "", fmt.Errorf("sentinel %s: %w: get-master-addr-by-name answered %d elements", addr, ErrProtocol, len(v.Elems))
	}
	return net.JoinHostPort(v.Elems[0].Str, v.Elems[1].Str), nil
}

// Role returns the server's role, "master", "slave" or "sentinel".
func (c *Conn) Role(ctx context.Context) (string, error) {
	v, err := c.Do(ctx, "ROLE")
	switch {
	case err != nil:
		return "", err
	case v.Kind == ErrorReply:
		return "", fmt.Errorf("redis ROLE at %s: %w", c.opts.Addr, v.Err)
	case v.Kind != Array || len(v.Elems) == 0 || v.Elems[0].Kind != Bulk:
		return "", fmt.Errorf("redis ROLE at %s: %w", c.opts.Addr, ErrProtocol)
	}
	return v.Elems[0].Str, nil
}

// Wait sends WAIT numReplicas timeout and returns how many replicas
// acknowledged every write this connection made before it.
func (c *Conn) Wait(ctx context.Context, numReplicas int, timeout time.Duration) (int64, error) {
	ms := timeout.Milliseconds()
	if ms <= 0 {
		ms = 1 // 0 would wait for ever
	}
	v, err := c.do(ctx, timeout, "WAIT", fmt.Sprint(numReplicas), fmt.Sprint(ms))
	switch {
	case err != nil:
		return 0, err
	case v.Kind == ErrorReply:
		return 0, fmt.Errorf("redis WAIT at %s: %w", c.opts.Addr, v.Err)
	case v.Kind != Integer:
		return 0, fmt.Errorf("redis WAIT at %s: %w", c.opts.Addr, ErrProtocol)
	}
	return v.Int, nil
}

// Addr is the address the connection was made to.
func (c *Conn) Addr() string { return c.opts.Addr }
