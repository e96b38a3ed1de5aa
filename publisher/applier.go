package publisher

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/internal/backoff"
)

// Confirmer is told, in commit order, the end position of every
// transaction whose invalidations Redis has acknowledged.
type Confirmer interface {
	Confirm(lsn cdc.LSN)
}

// Observer is told what the applier does; methods must be cheap.
type Observer interface {
	Applied(batch []Applied, st Stats, took time.Duration)
	ApplyFailed(err error)
	Bridged(messages int)
	BridgeFailed(err error)
}

// Bridge carries a batch's messages to a second system once Redis has
// applied it (NATS). Publish returns how many messages it sent.
type Bridge interface {
	Publish(ctx context.Context, batch []Applied) (int, error)
}

// ApplierConfig bounds batches and retries.
type ApplierConfig struct {
	// A batch coalesces consecutive transactions already waiting, up to
	// MaxBatchTxns transactions or MaxBatchKeys keys (defaults 1000, 10000).
	MaxBatchTxns int
	MaxBatchKeys int
	// Linger waits up to this long for more transactions to join a batch
	// (default 0: take only what is already waiting).
	Linger time.Duration
	// Retry backoff bounds (defaults 50ms and 5s).
	MinBackoff, MaxBackoff time.Duration
}

// Applier takes committed transactions in commit order, applies them in
// coalesced batches, retries a failed batch until it succeeds, and confirms
// each applied position. It never skips a transaction.
type Applier struct {
	pub  *Publisher
	in   <-chan Applied
	conf Confirmer
	obs  Observer
	log  *zap.Logger
	cfg  ApplierConfig

	// Bridge, when set, gets every batch after Redis; the batch is
	// confirmed only when both have it.
	Bridge Bridge

	batch []Applied
}

// NewApplier returns an Applier reading in. obs may be nil.
func NewApplier(pub *Publisher, in <-chan Applied, conf Confirmer, obs Observer, log *zap.Logger, cfg ApplierConfig) *Applier {
	if cfg.MaxBatchTxns <= 0 {
		cfg.MaxBatchTxns = 1000
	}
	if cfg.MaxBatchKeys <= 0 {
		cfg.MaxBatchKeys = 10_000
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 50 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if obs == nil {
		obs = noObserver{}
	}
	return &Applier{pub: pub, in: in, conf: conf, obs: obs, log: log, cfg: cfg}
}

// noObserver is the Observer of an Applier given none.
type noObserver struct{}

func (noObserver) Applied([]Applied, Stats, time.Duration) {}
func (noObserver) ApplyFailed(error)                       {}
func (noObserver) Bridged(int)                             {}
func (noObserver) BridgeFailed(error)                      {}

// Run applies until in is closed and drained (it returns nil) or ctx ends
// (it returns ctx.Err() and leaves the rest unconfirmed).
//
// A batch starts as soon as the previous one is acknowledged (at once when
// a transaction arrives while Redis is idle) and takes every transaction
// that arrived meanwhile: batches coalesce only while a round trip is in
// flight, so they grow with the load and a transaction waits at most for
// the batch in flight before its own (no timer). One batch is in flight at
// a time, and positions are confirmed in commit order.
func (a *Applier) Run(ctx context.Context) error {
	for {
		var first Applied
		var ok bool
		select {
		case first, ok = <-a.in:
			if !ok {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
		a.collect(ctx, first)
		if err := a.retry(ctx, "redis", a.applyRedis, a.obs.ApplyFailed); err != nil {
			return err
		}
		end, whole := lastEnd(a.batch)
		if a.Bridge != nil && whole { // early parts have no messages
			if err := a.retry(ctx, "nats", a.applyBridge, a.obs.BridgeFailed); err != nil {
				return err
			}
		}
		if whole {
			a.conf.Confirm(end)
		}
		clear(a.batch)
		a.batch = a.batch[:0]
	}
}

// lastEnd is the end position of the batch's last complete transaction:
// an early part (cdc.Committed.Early) confirms nothing.
func lastEnd(batch []Applied) (cdc.LSN, bool) {
	for i := len(batch) - 1; i >= 0; i-- {
		if !batch[i].Early {
			return batch[i].EndLSN, true
		}
	}
	return 0, false
}

// collect starts a batch with first and adds what is waiting, within bounds.
func (a *Applier) collect(ctx context.Context, first Applied) {
	a.batch = append(a.batch[:0], first)
	keys := len(first.Txn.Result().ToUnlink())
	var linger <-chan time.Time
	if a.cfg.Linger > 0 {
		t := time.NewTimer(a.cfg.Linger)
		defer t.Stop()
		linger = t.C
	}
	for len(a.batch) < a.cfg.MaxBatchTxns && keys < a.cfg.MaxBatchKeys {
		var c Applied
		var ok bool
		select {
		case c, ok = <-a.in:
		default:
			// nothing waiting: wait for more only while lingering
			if linger == nil {
				return
			}
			select {
			case c, ok = <-a.in:
			case <-linger:
				return
			case <-ctx.Done():
				return
			}
		}
		if !ok {
			return
		}
		a.batch = append(a.batch, c)
		keys += len(c.Txn.Result().ToUnlink())
	}
}

func (a *Applier) applyRedis(ctx context.Context) error {
	start := time.Now()
	st, err := a.pub.Apply(ctx, a.batch)
	if err == nil {
		a.obs.Applied(a.batch, st, time.Since(start))
	}
	return err
}

func (a *Applier) applyBridge(ctx context.Context) error {
	n, err := a.Bridge.Publish(ctx, a.batch)
	if err == nil {
		a.obs.Bridged(n)
	}
	return err
}

// retry runs one stage of the batch until it succeeds or ctx ends, telling
// failed of every failure, backing off exponentially with jitter and
// logging at most every 10 seconds.
func (a *Applier) retry(ctx context.Context, sink string, stage func(context.Context) error, failed func(error)) error {
	b := backoff.Backoff{Min: a.cfg.MinBackoff, Max: a.cfg.MaxBackoff}
	var lastLog time.Time
	failures := 0
	for {
		err := stage(ctx)
		if err == nil {
			if failures > 0 {
				a.log.Info(sink+" is back: batch applied", zap.Int("failed_attempts", failures))
			}
			return nil
		}
		failed(err)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		failures++
		if time.Since(lastLog) >= 10*time.Second {
			a.log.Warn("applying batch to "+sink+" failed; retrying (nothing is confirmed until it succeeds)",
				zap.Error(err), zap.Int("attempt", failures), zap.Duration("backoff", b.Step()),
				zap.Stringer("lsn", a.batch[0].CommitLSN))
			lastLog = time.Now()
		}
		if err := b.Wait(ctx); err != nil {
			return err
		}
	}
}
