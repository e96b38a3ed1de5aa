//go:build unix

package cdc

import (
	"net"
	"syscall"
)

// setRcvLowat sets c's SO_RCVLOWAT, under TLS or internal/sockio's
// wrapping if c is wrapped.
func setRcvLowat(c net.Conn, n int) error {
	for { // under TLS, internal/sockio
		t, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = t.NetConn()
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return errNoGulp
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, n)
	}); err != nil {
		return err
	}
	return serr
}
