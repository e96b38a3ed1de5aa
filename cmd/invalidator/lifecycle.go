package main

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"
)

// lifecycle runs the daemon's long-lived parts as one unit. Parts start in
// the order they were added; when one of them ends (or the daemon's context
// does), they are stopped in the reverse order, each only after the part
// added after it has returned. So the shutdown order is stated once, by the
// order of add: what consumes is added before what produces for it.
type lifecycle struct {
	log   *zap.Logger
	parts []*part
}

// part is one long-lived goroutine of the daemon.
type part struct {
	name string
	// run runs until its context ends or it fails.
	run func(ctx context.Context) error
	// background parts may end early (a heartbeat that only had to mark
	// the slot) without stopping the others; their errors are not the
	// daemon's.
	background bool
	// detached parts keep running when the daemon's context ends, until
	// their turn to stop comes: a part that must finish what others
	// handed it.
	detached bool
	// drain, when set, asks the part to finish on its own at its turn to
	// stop (closing its input); it then has grace to return before its
	// context is cancelled.
	drain func()
	grace time.Duration

	cancel context.CancelFunc
	done   chan error
}

func (l *lifecycle) add(p *part) { l.parts = append(l.parts, p) }

// run starts every part and returns, once all have stopped, the error of
// the first part that ended, or else the first error a part returned while
// stopping (a cancellation is not an error). Errors are returned as the
// parts return them: a part names itself in its errors where that helps.
func (l *lifecycle) run(ctx context.Context) error {
	ended := make(chan *part, len(l.parts))
	for _, p := range l.parts {
		parent := ctx
		if p.detached {
			parent = context.WithoutCancel(ctx)
		}
		var pctx context.Context
		pctx, p.cancel = context.WithCancel(parent)
		p.done = make(chan error, 1)
		go func() {
			err := p.run(pctx)
			p.done <- err
			if !p.background {
				ended <- p
			}
		}()
	}

	var result error
	var first *part
	select {
	case first = <-ended:
		result = <-first.done
	case <-ctx.Done():
	}
	for i := len(l.parts) - 1; i >= 0; i-- {
		p := l.parts[i]
		if p == first {
			p.cancel()
			continue
		}
		if err := l.stop(p); err != nil && result == nil && !p.background && !errors.Is(err, context.Canceled) {
			result = err
		}
	}
	return result
}

// stop ends p and waits for it: a part with drain first gets its grace.
func (l *lifecycle) stop(p *part) error {
	defer p.cancel()
	if p.drain == nil {
		p.cancel()
		return <-p.done
	}
	p.drain()
	t := time.NewTimer(p.grace)
	defer t.Stop()
	select {
	case err := <-p.done:
		return err
	case <-t.C:
		l.log.Warn(p.name+" did not finish in time; what it had not done is redone on restart", zap.Duration("bound", p.grace))
		p.cancel()
		return <-p.done
	}
}
