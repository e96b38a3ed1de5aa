//go:build unix

package cdc

import (
	"net"
	"syscall"
)

// setRcvLowat sets c's SO_RCVLOWAT, under TLS if c is a TLS connection.
func setRcvLowat(c net.Conn, n int) error {
	if t, ok := c.(interface{ NetConn() net.Conn }); ok {
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
