package main

import (
	"runtime"
	"runtime/debug"
	"testing"
)

// The daemon runs on one P unless GOMAXPROCS says otherwise.
func TestDefaultProcs(t *testing.T) {
	saved := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(saved) })

	t.Setenv("GOMAXPROCS", "")
	runtime.GOMAXPROCS(3)
	if got := defaultProcs(); got != 1 || runtime.GOMAXPROCS(0) != 1 {
		t.Errorf("GOMAXPROCS unset: defaultProcs() = %d, GOMAXPROCS %d; want 1 and 1", got, runtime.GOMAXPROCS(0))
	}

	t.Setenv("GOMAXPROCS", "3")
	runtime.GOMAXPROCS(3) // as the runtime would have read it at start
	if got := defaultProcs(); got != 3 || runtime.GOMAXPROCS(0) != 3 {
		t.Errorf("GOMAXPROCS=3: defaultProcs() = %d, GOMAXPROCS %d; want 3 and 3", got, runtime.GOMAXPROCS(0))
	}
}

// The collector's target is 200 unless GOGC says otherwise.
func TestDefaultGC(t *testing.T) {
	saved := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(saved) })

	t.Setenv("GOGC", "")
	if got, now := defaultGC(), debug.SetGCPercent(100); got != 200 || now != 200 {
		t.Errorf("GOGC unset: defaultGC() = %d, GC percent %d; want 200 and 200", got, now)
	}

	t.Setenv("GOGC", "50")
	debug.SetGCPercent(50) // as the runtime would have read it at start
	if got, now := defaultGC(), debug.SetGCPercent(50); got != 50 || now != 50 {
		t.Errorf("GOGC=50: defaultGC() = %d, GC percent %d; want 50 and 50", got, now)
	}
}
