package publisher

import (
	"context"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"

	"github.com/cachewire/invalidator/cdc"
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
	return &Applier{pub: pub, in: in, conf: conf, obs: obs, log: log, cfg: cfg}
}

// Run applies until in is closed and drained (it returns nil) or ctx ends
// (it returns ctx.Err() and leaves the rest unconfirmed).
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
		if err := a.applyWithRetry(ctx); err != nil {
			return err
		}
		a.conf.Confirm(a.batch[len(a.batch)-1].EndLSN)
		clear(a.batch)
		a.batch = a.batch[:0]
	}
}

// collect starts a batch with first and adds what is waiting, within bounds.
func (a *Applier) collect(ctx context.Context, first Applied) {
	a.batch = append(a.batch[:0], first)
	keys := len(first.Txn.Result().Keys)
	var linger <-chan time.Time
	if a.cfg.Linger > 0 {
		t := time.NewTimer(a.cfg.Linger)
		defer t.Stop()
		linger = t.C
	}
	for len(a.batch) < a.cfg.MaxBatchTxns && keys < a.cfg.MaxBatchKeys {
		select {
		case c, ok := <-a.in:
			if !ok {
				return
			}
			a.batch = append(a.batch, c)
			keys += len(c.Txn.Result().Keys)
			continue
		default:
		}
		if linger == nil {
			return
		}
		select {
		case c, ok := <-a.in:
			if !ok {
				return
			}
			a.batch = append(a.batch, c)
			keys += len(c.Txn.Result().Keys)
		case <-linger:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (a *Applier) applyWithRetry(ctx context.Context) error {
	backoff := a.cfg.MinBackoff
	var lastLog time.Time
	failures := 0
	for {
		start := time.Now()
		st, err := a.pub.Apply(ctx, a.batch)
		if err == nil {
			if failures > 0 {
				a.log.Info("redis is back: batch applied", zap.Int("failed_attempts", failures))
			}
			if a.obs != nil {
				a.obs.Applied(a.batch, st, time.Since(start))
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		failures++
		if a.obs != nil {
			a.obs.ApplyFailed(err)
		}
		if time.Since(lastLog) >= 10*time.Second {
			a.log.Warn("applying batch failed; retrying (nothing is confirmed until it succeeds)",
				zap.Error(err), zap.Int("attempt", failures), zap.Duration("backoff", backoff),
				zap.Stringer("lsn", a.batch[0].CommitLSN))
			lastLog = time.Now()
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(backoff*2, a.cfg.MaxBackoff)
	}
}
