package main

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progress prints what the suite is doing, with the time, on stderr.
type progress struct {
	mu sync.Mutex
	w  io.Writer
}

func newProgress(w io.Writer) *progress { return &progress{w: w} }

func (p *progress) printf(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "[bench %s] %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
}
