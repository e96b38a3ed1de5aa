package publisher

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cachewire/invalidator/cdc"
)

// confirmations records what an Applier confirms.
type confirmations struct {
	mu   sync.Mutex
	lsns []cdc.LSN
	more chan struct{} // a token after each confirmation
}

func newConfirmations() *confirmations {
	return &confirmations{more: make(chan struct{}, 1000)}
}

func (c *confirmations) Confirm(lsn cdc.LSN) {
	c.mu.Lock()
	c.lsns = append(c.lsns, lsn)
	c.mu.Unlock()
	c.more <- struct{}{}
}

func (c *confirmations) got() []cdc.LSN {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.lsns)
}

// holdFirst records the size of each batch Redis acknowledged and holds
// the applier inside the first one until release is closed: to the
// applier, that batch's round trip is still in flight.
type holdFirst struct {
	mu      sync.Mutex
	sizes   []int
	held    chan struct{} // closed once the first batch is applied
	release chan struct{}
	failed  int
}

func newHoldFirst() *holdFirst {
	return &holdFirst{held: make(chan struct{}), release: make(chan struct{})}
}

func (h *holdFirst) Applied(batch []Applied, _ Stats, _ time.Duration) {
	h.mu.Lock()
	h.sizes = append(h.sizes, len(batch))
	first := len(h.sizes) == 1
	h.mu.Unlock()
	if first {
		close(h.held)
		<-h.release
	}
}

func (h *holdFirst) ApplyFailed(error) {
	h.mu.Lock()
	h.failed++
	h.mu.Unlock()
}
func (h *holdFirst) Bridged(int)        {}
func (h *holdFirst) BridgeFailed(error) {}

func (h *holdFirst) batchSizes() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.sizes)
}

// singleRowTxns returns n single-row transactions in commit order, the
// i-th (from 0) committed at LSN 0x1000*(i+1) and ending 0x10 later, and
// the keys they invalidate.
func singleRowTxns(t *testing.T, n int) ([]Applied, []string) {
	t.Helper()
	rt, row := queueRouter(t, 0)
	var txns []Applied
	var keys []string
	for i := range n {
		txn := rt.NewTxn(uint32(1000 + i))
		txn.Add(row("t"+strconv.Itoa(i%3), i))
		txn.Commit()
		lsn := cdc.LSN(0x1000 * (i + 1))
		txns = append(txns, Applied{Txn: txn, Xid: uint32(1000 + i), CommitLSN: lsn, EndLSN: lsn + 0x10,
			CommitTime: time.Date(2026, 12, 8, 0, 0, 0, i*1000, time.UTC)})
		keys = append(keys, txn.Result().Keys...)
	}
	return txns, keys
}

// runApplier runs an Applier over in until the test ends; wait returns
// Run's error once in is closed.
func runApplier(t *testing.T, a *Applier) (wait func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return func() error {
		select {
		case err := <-done:
			done <- err // for the cleanup
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return within 30s of its input closing")
			return nil
		}
	}
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// While a batch's round trip is in flight, the transactions that arrive
// wait and then go together in the next batch, within the batch bound;
// each batch confirms its last transaction's end, strictly in commit
// order, and only after Redis has applied it (the journal and the keys
// show every transaction, in order).
func TestApplier_CoalescesWhileInFlightAndConfirmsInOrder(t *testing.T) {
	rdb := queueRedis(t)
	ctx := context.Background()
	txns, keys := singleRowTxns(t, 11)
	for _, k := range keys {
		if err := rdb.Set(ctx, k, "cached", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	pub := New(rdb, Config{ChannelPrefix: "inv:", Journal: true})
	defer pub.Close()
	in := make(chan Applied, len(txns))
	conf := newConfirmations()
	obs := newHoldFirst()
	a := NewApplier(pub, in, conf, obs, zap.NewNop(), ApplierConfig{MaxBatchTxns: 4})
	wait := runApplier(t, a)

	in <- txns[0]
	select {
	case <-obs.held:
	case <-time.After(30 * time.Second):
		t.Fatal("the first transaction was not applied within 30s")
	}
	if got := conf.got(); len(got) != 0 {
		t.Fatalf("confirmed %v while the first batch is still in flight", got)
	}
	for _, c := range txns[1:] { // arrive while the first round trip is in flight
		in <- c
	}
	close(obs.release)
	close(in)
	if err := wait(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	if got, want := obs.batchSizes(), []int{1, 4, 4, 2}; !slices.Equal(got, want) {
		t.Errorf("batch sizes %v, want %v (the first alone, then what waited, 4 at most)", got, want)
	}
	want := []cdc.LSN{txns[0].EndLSN, txns[4].EndLSN, txns[8].EndLSN, txns[10].EndLSN}
	if got := conf.got(); !slices.Equal(got, want) {
		t.Errorf("confirmed %v, want %v", got, want)
	}
	entries, err := rdb.XRange(ctx, JournalKey("inv:"), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var journaled []string
	for _, e := range entries {
		lsn, _ := e.Values["lsn"].(string)
		journaled = append(journaled, lsn)
	}
	var inOrder []string
	for _, c := range txns {
		inOrder = append(inOrder, c.CommitLSN.String())
	}
	if !slices.Equal(journaled, inOrder) {
		t.Errorf("journal has the transactions %v, want %v", journaled, inOrder)
	}
	if n, err := rdb.Exists(ctx, keys...).Result(); err != nil || n != 0 {
		t.Errorf("%d of %d keys left (err %v), want none", n, len(keys), err)
	}
}

// A transaction that arrives while Redis is idle is a batch of its own,
// applied and confirmed without waiting for company.
func TestApplier_IdleTransactionGoesAlone(t *testing.T) {
	rdb := queueRedis(t)
	txns, keys := singleRowTxns(t, 20)
	pub := New(rdb, Config{ChannelPrefix: "inv:"})
	defer pub.Close()
	in := make(chan Applied)
	conf := newConfirmations()
	obs := newHoldFirst()
	close(obs.release) // hold nothing
	a := NewApplier(pub, in, conf, obs, zap.NewNop(), ApplierConfig{})
	wait := runApplier(t, a)
	ctx := context.Background()
	for i, c := range txns {
		if err := rdb.Set(ctx, keys[2*i], "cached", 0).Err(); err != nil {
			t.Fatal(err)
		}
		in <- c
		// confirmed before the next one is even sent: nothing waited
		// for it to have company
		waitFor(t, "confirmation of transaction "+strconv.Itoa(i), func() bool { return len(conf.got()) == i+1 })
		if got := conf.got()[i]; got != c.EndLSN {
			t.Fatalf("confirmation %d is %v, want %v", i, got, c.EndLSN)
		}
		if n, err := rdb.Exists(ctx, keys[2*i]).Result(); err != nil || n != 0 {
			t.Fatalf("key %s still there once its transaction is confirmed (err %v)", keys[2*i], err)
		}
	}
	close(in)
	if err := wait(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	sizes := obs.batchSizes()
	if len(sizes) != len(txns) || slices.Max(sizes) != 1 {
		t.Errorf("batch sizes %v, want %d batches of one", sizes, len(txns))
	}
}
