package resp

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cachewire/invalidator/internal/testsrv"
)

const (
	innerSecret   = "s3cr3t-inner"
	defaultSecret = "s3cr3t-default"
)

// acl is a Redis with a password on the default user and a named user.
func acl(t *testing.T) *testsrv.Redis {
	t.Helper()
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	srv, err := testsrv.NewRedisWith(testsrv.RedisOptions{
		Users:    []string{"default on >" + defaultSecret + " ~* &* +@all", "inv on >" + innerSecret + " ~* &* +@all"},
		Username: "inv", Password: innerSecret,
	})
	if err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

func options(srv *testsrv.Redis) Options {
	var d net.Dialer
	return Options{Network: "tcp", Addr: srv.Addr(), Dial: d.DialContext}
}

func dial(t *testing.T, o Options) *Conn {
	t.Helper()
	c, err := Dial(context.Background(), o)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip writes the commands and returns their replies.
func roundTrip(t *testing.T, c *Conn, cmds ...[]string) []Reply {
	t.Helper()
	var b []byte
	for _, args := range cmds {
		b = AppendCommand(b, len(args))
		for _, a := range args {
			b = AppendString(b, a)
		}
	}
	ctx := context.Background()
	if err := c.Write(ctx, b); err != nil {
		t.Fatalf("write: %v", err)
	}
	var got []Reply
	if err := c.ReadReplies(ctx, len(cmds), func(i int, r Reply) {
		if i != len(got) {
			t.Errorf("reply %d handed on as %d", len(got), i)
		}
		got = append(got, r)
	}); err != nil {
		t.Fatalf("read: %v", err)
	}
	return got
}

// Authenticated as a named user, in database 3, named: the commands land
// there, and an error reply in a pipeline leaves the replies after it in
// step.
func TestConn_NamedUser(t *testing.T) {
	srv := acl(t)
	o := options(srv)
	o.Username, o.Password, o.DB, o.ClientName = "inv", innerSecret, 3, "invalidator-test"
	c := dial(t, o)

	got := roundTrip(t, c,
		[]string{"SET", "k", "v"},
		[]string{"XADD", "k", "*", "f", "v"}, // WRONGTYPE
		[]string{"UNLINK", "k", "absent"},
		[]string{"ACL", "WHOAMI"},
		[]string{"CLIENT", "GETNAME"},
	)
	if got[0].Kind != Status {
		t.Errorf("SET: %+v", got[0])
	}
	if got[1].Kind != ErrorReply || !strings.HasPrefix(string(got[1].Err), "WRONGTYPE") {
		t.Errorf("XADD on a string: %+v, want a WRONGTYPE error", got[1])
	}
	if got[2] != (Reply{Kind: Integer, Int: 1}) {
		t.Errorf("UNLINK of one present key and one absent: %+v, want 1", got[2])
	}
	if got[3].Kind != Bulk || got[3].Int != int64(len("inv")) {
		t.Errorf("ACL WHOAMI: %+v, want the 3-byte user name", got[3])
	}
	if got[4].Kind != Bulk || got[4].Int != int64(len(o.ClientName)) {
		t.Errorf("CLIENT GETNAME: %+v, want %q", got[4], o.ClientName)
	}

	// database 3 got the SET (and UNLINK), database 0 did not
	rdb := srv.Client(t)
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "zero", 0).Err(); err != nil {
		t.Fatal(err)
	}
	got = roundTrip(t, c, []string{"EXISTS", "k"})
	if got[0] != (Reply{Kind: Integer}) {
		t.Errorf("EXISTS k in database 3: %+v, want 0 (the key set in database 0 is not there)", got[0])
	}
}

func TestConn_DefaultUser(t *testing.T) {
	srv := acl(t)
	o := options(srv)
	o.Password = defaultSecret
	c := dial(t, o)
	got := roundTrip(t, c, []string{"ACL", "WHOAMI"})
	if got[0].Kind != Bulk || got[0].Int != int64(len("default")) {
		t.Errorf("ACL WHOAMI: %+v, want default", got[0])
	}
}

func TestConn_BadPassword(t *testing.T) {
	srv := acl(t)
	o := options(srv)
	o.Username, o.Password = "inv", "wrong-password"
	_, err := Dial(context.Background(), o)
	if err == nil {
		t.Fatal("dial with a wrong password succeeded")
	}
	var re Error
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("error %v, want the server's WRONGPASS reply", err)
	}
	if strings.Contains(err.Error(), "wrong-password") {
		t.Errorf("the error repeats the password: %v", err)
	}
}

func TestConn_Unreachable(t *testing.T) {
	port, err := testsrv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	var d net.Dialer
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	_, err = Dial(context.Background(), Options{Network: "tcp", Addr: addr, Dial: d.DialContext})
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("dial of a closed port: %v, want an error naming %s", err, addr)
	}
}

// A read blocked on the server returns when its context is cancelled, and
// when the read timeout passes.
func TestConn_Interrupted(t *testing.T) {
	srv := acl(t)
	o := options(srv)
	o.Username, o.Password, o.ClientName = "inv", innerSecret, "blocked-reader"
	c := dial(t, o)
	blpop := AppendString(AppendString(AppendString(AppendCommand(nil, 3), "BLPOP"), "never"), "0")
	if err := c.Write(context.Background(), blpop); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.ReadReplies(ctx, 1, func(int, Reply) {}) }()

	// cancel once the server has the client blocked in BLPOP
	rdb := srv.Client(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, err := rdb.ClientList(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(list, "name=blocked-reader") && strings.Contains(list, "cmd=blpop") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the client never blocked in BLPOP:\n%s", list)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("read after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the read did not return after its context was cancelled")
	}

	o.ClientName, o.ReadTimeout = "", 20*time.Millisecond
	c = dial(t, o)
	if err := c.Write(context.Background(), blpop); err != nil {
		t.Fatal(err)
	}
	err := c.ReadReplies(context.Background(), 1, func(int, Reply) {})
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("read past the read timeout: %v, want a timeout", err)
	}
}
