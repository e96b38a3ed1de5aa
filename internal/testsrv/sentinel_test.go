package testsrv_test

import (
	"context"
	"testing"
	"time"

	"github.com/cachewire/invalidator/internal/testsrv"
)

// A killed master is replaced by its replica, and comes back as a
// replica of the new master when restarted.
func TestRedisSentinel_Failover(t *testing.T) {
	s := testsrv.StartRedisSentinel(t, 1)
	old := s.Master(t)
	if nodes := s.Nodes(); old != nodes[0] || len(nodes) != 2 {
		t.Fatalf("master %s, nodes %v: want the first node as master of two", old, nodes)
	}
	ctx := context.Background()
	if err := s.Client(t, old).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.WaitReplicas(t, old, 1, 30*time.Second)
	s.Kill(t, old)
	promoted := s.WaitPromoted(t, old, 60*time.Second)
	if promoted != s.Nodes()[1] {
		t.Fatalf("promoted %s, want %s", promoted, s.Nodes()[1])
	}
	if v, err := s.Client(t, promoted).Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET k on the new master = %q, %v", v, err)
	}
	s.Restart(t, old)
	s.WaitReplicas(t, promoted, 1, 60*time.Second)
	if got := s.Master(t); got != promoted {
		t.Fatalf("master after the restart %s, want %s", got, promoted)
	}
}
