package cdc

import (
	"errors"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"
)

// Gulping. Inside a large transaction nothing can be published before its
// commit arrives, so there is no hurry to read each change the moment the
// walsender sends it. The walsender flushes every change on its own, and
// each one that arrives wakes the Go runtime's network poller: when the
// walsender trickles a transaction in (it competes with the writers for
// the CPU), those wake-ups were most of the daemon's CPU, one per change.
//
// So once a transaction has gulpAfter messages (changes, mostly), the
// socket's SO_RCVLOWAT is raised to gulpBytes: the kernel then signals the
// socket readable only once that much has arrived. The read deadline is at
// most gulpWait away, so that the end of the transaction (which may be
// less) is read that late at most. Reads of data already there are
// unchanged. gulpBytes is kept small: Linux clamps the receive window to
// it when the receive buffer is too small for twice as much, and the clamp
// stays for the connection.
//
// A busy stream of small transactions gulps too. Each transaction is three
// messages (Begin, a change, Commit), each flushed by the walsender on its
// own: when the daemon keeps up, that is up to three wake-ups a
// transaction, and at tens of thousands a second their CPU is taken from
// the walsender and the writers on a machine they already fill. So while
// more than busyRate transactions a second commit (counted over
// busyWindow), reads gulp as inside a large transaction: a commit then
// waits up to gulpWait before it is read. Below that rate, and outside
// large transactions, the socket is as it was and no commit waits.
const (
	gulpAfter  = 1000                   // changes of a transaction before it gulps
	gulpBytes  = 16 << 10               // SO_RCVLOWAT while gulping
	gulpWait   = 2 * time.Millisecond   // the longest a gulping read waits
	busyRate   = 20000                  // commits a second above which reads gulp
	busyWindow = 100 * time.Millisecond // the window the rate is counted over
)

// errNoGulp: the connection is not a TCP socket (a Unix socket signals
// readable whatever SO_RCVLOWAT says), so reads do not gulp.
var errNoGulp = errors.New("not a TCP connection")

// gulper turns gulping on and off for one replication connection.
type gulper struct {
	conn  net.Conn
	log   *zap.Logger
	n     int       // messages received in the current transaction (or stream block)
	large bool      // the current transaction has had gulpAfter messages
	busy  busyMeter // its rate is busyRate unless a test sets another
	on    bool      // gulping: the read deadline must be at most gulpWait away
	off   bool      // the connection cannot gulp
}

// update follows one decoded message at now; receiving: a transaction's
// changes are arriving (Decoder.Receiving); committed: the message
// committed a transaction.
func (g *gulper) update(now time.Time, receiving, committed bool) error {
	if receiving {
		g.n++
		g.large = g.n >= gulpAfter
	} else {
		g.n, g.large = 0, false
	}
	if committed {
		g.busy.commit()
	}
	return g.set(now)
}

// tick lets the busy window close when nothing arrives.
func (g *gulper) tick(now time.Time) error {
	if !g.on {
		return nil // only a gulping stream can stop being busy unseen
	}
	return g.set(now)
}

func (g *gulper) set(now time.Time) error {
	want := !g.off && (g.large || g.busy.busy(now))
	if want == g.on {
		return nil
	}
	lowat := 1
	if want {
		lowat = gulpBytes
	}
	if err := setRcvLowat(g.conn, lowat); err != nil {
		if want { // cannot gulp: read change by change
			g.off = true
			if !errors.Is(err, errNoGulp) {
				g.log.Info("reads do not gulp", zap.Error(err))
			}
			return nil
		}
		return fmt.Errorf("reset SO_RCVLOWAT: %w", err)
	}
	g.on = want
	g.log.Debug("gulping reads", zap.Bool("on", want), zap.Bool("large_transaction", g.large), zap.Bool("busy", g.busy.isBusy))
	return nil
}

// busyMeter tells whether transactions commit faster than busyRate, from
// the count over the last whole busyWindow.
type busyMeter struct {
	rate    float64   // commits a second above which the stream is busy
	start   time.Time // the current window's start
	commits int       // in the current window
	isBusy  bool      // as of the last whole window
}

func (b *busyMeter) commit() { b.commits++ }

func (b *busyMeter) busy(now time.Time) bool {
	if b.start.IsZero() {
		b.start = now
	}
	if d := now.Sub(b.start); d >= busyWindow {
		b.isBusy = b.rate > 0 && float64(b.commits) >= b.rate*d.Seconds()
		b.start, b.commits = now, 0
	}
	return b.isBusy
}
