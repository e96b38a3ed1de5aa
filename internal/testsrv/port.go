package testsrv

import (
	"fmt"
	"net"
)

// FreePort returns a TCP port on 127.0.0.1 that was free at the moment of
// the call: it binds port 0, reads the port the kernel chose and releases it.
// Another process may take the port before the caller binds it; the New*
// functions of this package retry with a new port when a server exits during
// its first start for that reason.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("listen on 127.0.0.1:0: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("close probe listener on port %d: %w", port, err)
	}
	return port, nil
}
