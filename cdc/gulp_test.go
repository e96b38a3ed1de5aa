package cdc

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/cachewire/invalidator/internal/testsrv"
)

func TestBusyMeter(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	b := busyMeter{rate: 1000} // 100 commits a window
	if b.busy(t0) {
		t.Fatal("busy before any window")
	}
	for range 99 {
		b.commit()
	}
	if b.busy(t0.Add(busyWindow)) {
		t.Error("busy after 99 commits in a window (990/s)")
	}
	for range 100 {
		b.commit()
	}
	if b.busy(t0.Add(busyWindow + busyWindow/2)) {
		t.Error("busy before its window closed")
	}
	if !b.busy(t0.Add(2 * busyWindow)) {
		t.Error("not busy after 100 commits in a window (1,000/s)")
	}
	// an idle stream stops being busy once a window has passed
	if b.busy(t0.Add(3 * busyWindow)) {
		t.Error("still busy after a window without commits")
	}
	// a late window counts its length: 150 commits over 1.5 windows is 1,000/s
	for range 150 {
		b.commit()
	}
	if !b.busy(t0.Add(4*busyWindow + busyWindow/2)) {
		t.Error("not busy after 150 commits over 1.5 windows")
	}
	off := busyMeter{} // no rate: never busy
	off.commit()
	if off.busy(t0) || off.busy(t0.Add(time.Second)) {
		t.Error("a meter without a rate is busy")
	}
}

// countTxn counts a transaction's changes.
type countTxn struct{ n int }

func (c *countTxn) Add(*Change)       { c.n++ }
func (c *countTxn) DiscardSub(uint32) {}
func (c *countTxn) Commit()           {}

// TestStream_BusyGulpingDeliversEachCommit checks that while a busy stream
// gulps, a lone transaction (far less than gulpBytes) is still read: the
// socket does not signal it, and without the short read deadline that
// goes with gulping it would wait for the next confirmation or status
// update, a minute away here.
func TestStream_BusyGulpingDeliversEachCommit(t *testing.T) {
	pg := testsrv.StartPostgres(t)
	url := pg.CreateDatabase(t, "gulp")
	pg.Exec(t, "gulp", `CREATE TABLE t (id int PRIMARY KEY, v text)`)

	core, logs := observer.New(zapcore.DebugLevel)
	out := make(chan Committed[*countTxn], 16)
	st := NewStream(StreamConfig{
		URL: url, Slot: "gulp", Publication: "gulp", Create: true, Tables: []string{"public.t"},
		StatusInterval: time.Minute, AckDelay: time.Minute, // no other reason to wake
	}, zap.New(core), nil, func(uint32) *countTxn { return &countTxn{} }, out)
	st.busyRate = 1 // any commit makes the stream busy
	done := runStream(t, st)

	busyGulps := func() int {
		return logs.FilterMessage("gulping reads").FilterField(zap.Bool("on", true)).FilterField(zap.Bool("busy", true)).Len()
	}
	// until the stream gulps for being busy (its first window has closed),
	// then 20 more: each must arrive although less than gulpBytes follows
	left := 20
	for i := 0; left > 0; i++ {
		if i == 1000 {
			t.Fatal("the stream did not gulp for being busy after 1,000 transactions")
		}
		if busyGulps() > 0 {
			left--
		}
		pg.Exec(t, "gulp", fmt.Sprintf(`INSERT INTO t VALUES (%d, 'x')`, i))
		select {
		case c := <-out:
			if c.Txn.n != 1 {
				t.Fatalf("transaction %d: %d changes, want 1", i, c.Txn.n)
			}
			st.Confirm(c.EndLSN)
		case err := <-done:
			t.Fatalf("Run ended: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("transaction %d not delivered within 10s", i)
		}
	}
}

// runStream runs st until the test ends and waits until it is active; the
// channel gets Run's result if it ends before.
func runStream[T Txn](t *testing.T, st *Stream[T]) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ended := make(chan error, 1)
	go func() {
		err := st.Run(ctx)
		ended <- err
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-ended; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, "the stream active", func() bool { return st.Role() == RoleActive })
	return done
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
