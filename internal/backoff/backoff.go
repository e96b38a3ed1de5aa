// Package backoff paces retries: a pause that doubles from Min to Max after
// each failure, with jitter so that many clients retrying after one outage
// spread out instead of arriving together.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is the pause between attempts. The zero value is not useful: set
// Min and Max (Max below Min is raised to Min). It is not safe for
// concurrent use; each retry loop owns one.
type Backoff struct {
	Min, Max time.Duration
	step     time.Duration // the current un-jittered pause; 0 before the first
}

// Step is the un-jittered pause the next Wait draws from, for logs.
func (b *Backoff) Step() time.Duration {
	if b.step == 0 {
		return b.Min
	}
	return b.step
}

// Next advances to the next step and returns the pause to take: between
// half of the step and all of it.
func (b *Backoff) Next() time.Duration {
	if b.step == 0 {
		b.step = b.Min
	} else {
		b.step = min(2*b.step, max(b.Max, b.Min))
	}
	if b.step <= 0 {
		return 0
	}
	return b.step/2 + rand.N(b.step/2+1)
}

// Reset starts over from Min, after an attempt that worked.
func (b *Backoff) Reset() { b.step = 0 }

// Wait pauses for Next, or until ctx ends, when it returns ctx.Err().
func (b *Backoff) Wait(ctx context.Context) error {
	return Sleep(ctx, b.Next())
}

// Sleep waits for d (not at all when d <= 0), or until ctx ends, when it
// returns ctx.Err().
func Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
