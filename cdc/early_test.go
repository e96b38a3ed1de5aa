package cdc

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cachewire/invalidator/internal/testsrv"
)

// splitTxn counts changes and splits off, every splitEvery, a part of its
// own (what router.Txn.Early does with keys).
type splitTxn struct{ n, handed int }

func (s *splitTxn) Add(*Change)       { s.n++ }
func (s *splitTxn) DiscardSub(uint32) {}
func (s *splitTxn) Commit()           {}

const splitEvery = 1000

// A large transaction that is not streamed arrives in early parts, then
// whole. When the connection breaks after an early part, the server sends
// the transaction again from the confirmed position and it is delivered:
// an early part must not count as handed on (the stream would then skip
// the transaction's rest as already delivered: lost invalidations).
func TestStream_EarlyPartsThenReconnect(t *testing.T) {
	pg := testsrv.StartPostgres(t)
	url := pg.CreateDatabase(t, "early")
	pg.Exec(t, "early", `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	// the test servers stream any transaction past 64kB; this one must
	// arrive after its commit, as those within logical_decoding_work_mem do
	pg.Exec(t, "early", `ALTER DATABASE early SET logical_decoding_work_mem = '1GB'`)

	var mu sync.Mutex
	begun := 0 // transactions started by the decoder
	out := make(chan Committed[*splitTxn], 1024)
	st := NewStream(StreamConfig{
		URL: url, Slot: "early", Publication: "early", Create: true, Tables: []string{"public.t"},
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	}, zap.NewNop(), nil, func(uint32) *splitTxn {
		mu.Lock()
		defer mu.Unlock()
		begun++
		return &splitTxn{}
	}, out)
	firstSplit := make(chan struct{})
	resume := make(chan struct{})
	var once sync.Once
	st.Early = func(s *splitTxn) (*splitTxn, bool) {
		if s.n-s.handed < splitEvery {
			return nil, false
		}
		part := &splitTxn{n: s.n - s.handed}
		s.handed = s.n
		once.Do(func() {
			close(firstSplit)
			<-resume // the connection is killed meanwhile
		})
		return part, true
	}
	done := runStream(t, st)

	// about 27 MB on the wire: more than the socket buffers (up to about
	// 10 MB with Linux's defaults) and the read buffer hold
	const rows = 500_000
	pg.Exec(t, "early", fmt.Sprintf(`INSERT INTO t SELECT i, 'x' FROM generate_series(1, %d) i`, rows))
	select {
	case <-firstSplit:
	case <-time.After(60 * time.Second):
		t.Fatal("no early part within 60s")
	}
	pg.Exec(t, "early", `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'early'`)
	close(resume)

	var parts []Committed[*splitTxn]
	var whole Committed[*splitTxn]
	deadline := time.After(2 * time.Minute)
	for whole.Txn == nil {
		select {
		case c := <-out:
			if c.Early {
				parts = append(parts, c)
			} else {
				whole = c
			}
		case err := <-done:
			t.Fatalf("Run ended: %v", err)
		case <-deadline:
			t.Fatalf("the transaction was not delivered after the reconnect (%d early parts)", len(parts))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if begun != 2 {
		t.Fatalf("the decoder began %d transactions, want 2 (the killed connection's and the re-sent one): "+
			"was the whole transaction buffered before the kill?", begun)
	}
	if whole.Txn.n != rows {
		t.Errorf("the transaction has %d changes, want %d", whole.Txn.n, rows)
	}
	// the re-sent transaction was split again from its start
	if least := rows/splitEvery + 1; len(parts) < least {
		t.Errorf("%d early parts, want at least %d", len(parts), least)
	}
	for i, p := range parts {
		if p.EndLSN != 0 || p.CommitLSN != whole.CommitLSN || !p.CommitTime.Equal(whole.CommitTime) || p.Txn.n != splitEvery {
			t.Fatalf("early part %d: commit %s, end %s, time %v, %d changes; want commit %s, end 0, time %v, %d changes",
				i, p.CommitLSN, p.EndLSN, p.CommitTime, p.Txn.n, whole.CommitLSN, whole.CommitTime, splitEvery)
		}
	}
	st.Confirm(whole.EndLSN)
}
