package main

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// recorder notes the order in which parts return.
type recorder struct {
	mu    sync.Mutex
	order []string
}

func (r *recorder) note(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.order = append(r.order, name)
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.order)
}

// untilDone is a part that runs until its context ends.
func untilDone(r *recorder, name string) func(context.Context) error {
	return func(ctx context.Context) error {
		<-ctx.Done()
		r.note(name)
		return ctx.Err()
	}
}

func TestLifecycle_StopsInReverseOrderWhenContextEnds(t *testing.T) {
	var r recorder
	l := lifecycle{log: zap.NewNop()}
	for _, n := range []string{"a", "b", "c"} {
		l.add(&part{name: n, run: untilDone(&r, n)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.run(ctx); err != nil {
		t.Fatalf("run after the context ended: %v, want nil (a cancellation is not an error)", err)
	}
	// the parts see the cancellation at once, so only the waiting is
	// ordered; run returns after all three
	if got := r.got(); len(got) != 3 {
		t.Fatalf("parts returned: %v, want all three", got)
	}
}

func TestLifecycle_FirstToEndStopsTheRestInReverse(t *testing.T) {
	var r recorder
	boom := errors.New("boom")
	release := make(chan struct{})
	l := lifecycle{log: zap.NewNop()}
	l.add(&part{name: "a", run: untilDone(&r, "a")})
	l.add(&part{name: "b", run: untilDone(&r, "b")})
	l.add(&part{name: "c", run: func(ctx context.Context) error {
		<-release
		r.note("c")
		return boom
	}})
	l.add(&part{name: "d", run: untilDone(&r, "d")})
	close(release)
	err := l.run(context.Background())
	if !errors.Is(err, boom) {
		t.Fatalf("run: %v, want the error of the part that ended first", err)
	}
	if want := []string{"c", "d", "b", "a"}; !slices.Equal(r.got(), want) {
		t.Fatalf("order of return %v, want %v", r.got(), want)
	}
}

func TestLifecycle_DetachedPartDrainsAfterTheOthers(t *testing.T) {
	var r recorder
	in := make(chan int, 1)
	l := lifecycle{log: zap.NewNop()}
	l.add(&part{
		name: "consumer",
		run: func(ctx context.Context) error {
			for {
				select {
				case _, ok := <-in:
					if !ok {
						r.note("consumer drained")
						return nil
					}
				case <-ctx.Done():
					r.note("consumer cancelled")
					return ctx.Err()
				}
			}
		},
		detached: true,
		drain:    func() { close(in) },
		grace:    time.Minute,
	})
	l.add(&part{name: "producer", run: untilDone(&r, "producer")})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.run(ctx); err != nil {
		t.Fatalf("run: %v", err)
	}
	if want := []string{"producer", "consumer drained"}; !slices.Equal(r.got(), want) {
		t.Fatalf("order %v, want %v: the detached part must outlive the context and drain", r.got(), want)
	}
}

func TestLifecycle_DrainPastGraceIsCancelled(t *testing.T) {
	var r recorder
	l := lifecycle{log: zap.NewNop()}
	l.add(&part{
		name:     "stuck",
		run:      untilDone(&r, "stuck"),
		detached: true,
		drain:    func() {}, // asks, but the part never finishes on its own
		grace:    time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.run(ctx); err != nil {
		t.Fatalf("run: %v, want nil: a part cancelled after its grace is not an error", err)
	}
	if want := []string{"stuck"}; !slices.Equal(r.got(), want) {
		t.Fatalf("order %v, want %v", r.got(), want)
	}
}

func TestLifecycle_BackgroundPartEndsAlone(t *testing.T) {
	var r recorder
	bgDone := make(chan struct{})
	l := lifecycle{log: zap.NewNop()}
	l.add(&part{name: "bg", background: true, run: func(context.Context) error {
		r.note("bg")
		close(bgDone)
		return errors.New("not the daemon's")
	}})
	boom := errors.New("boom")
	l.add(&part{name: "main", run: func(ctx context.Context) error {
		// ends only once the background part has returned, so the group
		// demonstrably kept running after it
		<-bgDone
		r.note("main")
		return boom
	}})
	if err := l.run(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("run: %v, want main's error, not the background part's", err)
	}
	if want := []string{"bg", "main"}; !slices.Equal(r.got(), want) {
		t.Fatalf("order %v, want %v", r.got(), want)
	}
}
