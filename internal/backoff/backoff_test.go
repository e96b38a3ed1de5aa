package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestNext_DoublesToMaxWithJitter(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: 700 * time.Millisecond}
	steps := []time.Duration{100, 200, 400, 700, 700}
	for i, want := range steps {
		want *= time.Millisecond
		d := b.Next()
		if b.Step() != want {
			t.Fatalf("attempt %d: step %v, want %v", i, b.Step(), want)
		}
		if d < want/2 || d > want {
			t.Fatalf("attempt %d: pause %v outside [%v, %v]", i, d, want/2, want)
		}
	}
	b.Reset()
	if b.Step() != b.Min {
		t.Fatalf("after Reset the step is %v, want Min %v", b.Step(), b.Min)
	}
	if b.Next(); b.Step() != b.Min {
		t.Fatalf("first step after Reset %v, want %v", b.Step(), b.Min)
	}
}

func TestNext_MaxBelowMin(t *testing.T) {
	b := Backoff{Min: time.Second, Max: time.Millisecond}
	b.Next()
	b.Next()
	if b.Step() != time.Second {
		t.Fatalf("step %v, want Min when Max < Min", b.Step())
	}
}

func TestNext_Jitters(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 50 {
		b := Backoff{Min: time.Second, Max: time.Second}
		seen[b.Next()] = true
	}
	if len(seen) < 2 {
		t.Fatalf("50 first pauses were all equal (%v): no jitter", seen)
	}
}

func TestWait_EndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := Backoff{Min: time.Hour, Max: time.Hour}
	if err := b.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on an ended context: %v, want context.Canceled", err)
	}
	if err := Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep(0) on an ended context: %v, want context.Canceled", err)
	}
	if err := Sleep(context.Background(), 0); err != nil {
		t.Fatalf("Sleep(0): %v", err)
	}
}
