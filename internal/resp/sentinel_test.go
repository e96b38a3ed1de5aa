package resp

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/cachewire/invalidator/internal/testsrv"
)

// The sentinels are asked in turn: a dead one is passed over, a master
// name they do not know is an error naming it, and a server that is not
// a master is refused at Dial.
func TestSentinel_MasterAddr(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	s := testsrv.StartRedisSentinel(t, 1)
	var d net.Dialer
	dead := "127.0.0.1:1" // nothing listens there
	ctx := context.Background()
	sn := &Sentinel{Addrs: append([]string{dead}, s.SentinelAddrs()...), Master: testsrv.SentinelMaster}
	got, err := sn.MasterAddr(ctx, d.DialContext)
	if err != nil || got != s.Master(t) {
		t.Fatalf("MasterAddr = %q, %v; want %s", got, err, s.Master(t))
	}
	c, err := Dial(ctx, Options{Network: "tcp", Dial: d.DialContext, Sentinel: sn})
	if err != nil {
		t.Fatalf("dial the master: %v", err)
	}
	if c.Addr() != got {
		t.Errorf("connected to %s, want %s", c.Addr(), got)
	}
	_ = c.Close()

	unknown := &Sentinel{Addrs: s.SentinelAddrs(), Master: "nosuch"}
	if _, err := unknown.MasterAddr(ctx, d.DialContext); !errors.Is(err, ErrNoMaster) || !strings.Contains(err.Error(), `"nosuch"`) {
		t.Errorf("unknown master: %v, want ErrNoMaster naming it", err)
	}
	none := &Sentinel{Addrs: []string{dead}, Master: testsrv.SentinelMaster}
	if _, err := none.MasterAddr(ctx, d.DialContext); !errors.Is(err, ErrNoMaster) {
		t.Errorf("no sentinel: %v, want ErrNoMaster", err)
	}
	// ROLE tells a replica (which Dial refuses behind Sentinel) apart
	replica := s.Nodes()[1]
	if role, err := roleOf(ctx, d.DialContext, replica); err != nil || role != "slave" {
		t.Fatalf("ROLE of %s = %q, %v", replica, role, err)
	}
}

func roleOf(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), addr string) (string, error) {
	c, err := Dial(ctx, Options{Network: "tcp", Addr: addr, Dial: dial})
	if err != nil {
		return "", err
	}
	defer func() { _ = c.Close() }()
	return c.Role(ctx)
}
