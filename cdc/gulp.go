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
// stays for the connection. Outside large transactions the socket is as it
// was, and no commit waits.
const (
	gulpAfter = 1000                 // changes of a transaction before it gulps
	gulpBytes = 16 << 10             // SO_RCVLOWAT while gulping
	gulpWait  = 2 * time.Millisecond // the longest a gulping read waits
)

// errNoGulp: the connection is not a TCP socket (a Unix socket signals
// readable whatever SO_RCVLOWAT says), so reads do not gulp.
var errNoGulp = errors.New("not a TCP connection")

// gulper turns gulping on and off for one replication connection.
type gulper struct {
	conn net.Conn
	log  *zap.Logger
	n    int  // messages received in the current transaction (or stream block)
	on   bool // gulping: the read deadline must be at most gulpWait away
	off  bool // the connection cannot gulp
}

// update follows one decoded message; receiving: a transaction's changes
// are arriving (Decoder.Receiving).
func (g *gulper) update(receiving bool) error {
	if receiving {
		if g.n++; g.n == gulpAfter && !g.off {
			if err := setRcvLowat(g.conn, gulpBytes); err != nil {
				g.off = true
				if !errors.Is(err, errNoGulp) {
					g.log.Info("large transactions are read change by change", zap.Error(err))
				}
				return nil
			}
			g.on = true
		}
		return nil
	}
	g.n = 0
	if g.on {
		g.on = false
		if err := setRcvLowat(g.conn, 1); err != nil {
			return fmt.Errorf("reset SO_RCVLOWAT: %w", err)
		}
	}
	return nil
}
