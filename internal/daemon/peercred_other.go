//go:build !linux

package daemon

import (
	"net"
	"os"
)

// peerUID: peer credentials are read on Linux only (SO_PEERCRED). Elsewhere
// the socket's mode 0600, set before it is reachable, is what admits only
// this user (and root).
func peerUID(net.Conn) (int, error) { return os.Getuid(), nil }
