package main

import (
	"runtime"
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
