package publisher

import (
	"testing"
	"time"
)

func TestPacer(t *testing.T) {
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	feed := func(p *pacer, at time.Time, n int, every time.Duration, batches int) time.Time {
		for range batches {
			p.batch(at, n)
			at = at.Add(every)
		}
		return at
	}

	// 2,000/s, one transaction per batch, uneven gaps: never waits
	var slow pacer
	at := start
	for i := range 200 {
		slow.batch(at, 1)
		if w := slow.wait(at.Add(10 * time.Microsecond)); w != 0 {
			t.Fatalf("batch %d at about 2,000/s: wait %v, want 0 (rate %.0f/s)", i, w, slow.rate())
		}
		at = at.Add([]time.Duration{50 * time.Microsecond, 950 * time.Microsecond}[i%2])
	}

	// 10,000/s in batches of 5 every 0.5 ms: waits until paceEvery after the last batch
	var fast pacer
	at = feed(&fast, start, 5, 500*time.Microsecond, 64)
	last := at.Add(-500 * time.Microsecond)
	if got := fast.rate(); got < 9000 || got > 11000 {
		t.Fatalf("rate = %.0f/s, want about 10,000", got)
	}
	if w, want := fast.wait(last.Add(300*time.Microsecond)), paceEvery-300*time.Microsecond; w != want {
		t.Errorf("wait 0.3 ms after a batch = %v, want %v", w, want)
	}
	if w := fast.wait(last.Add(paceEvery + time.Millisecond)); w > 0 {
		t.Errorf("wait past paceEvery = %v, want <= 0", w)
	}

	// the load stops: after a quiet spell the rate falls below the bound
	// within a few batches, and lone transactions go at once again
	at = at.Add(time.Second)
	for range 8 {
		fast.batch(at, 1)
		at = at.Add(100 * time.Millisecond)
	}
	if w := fast.wait(at); w != 0 {
		t.Errorf("after the load stopped: wait %v, want 0 (rate %.0f/s)", w, fast.rate())
	}
}
