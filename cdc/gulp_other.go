//go:build !unix

package cdc

import "net"

// setRcvLowat: reads do not gulp here (no SO_RCVLOWAT to set).
func setRcvLowat(net.Conn, int) error { return errNoGulp }
