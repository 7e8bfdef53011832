package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
)

// listenAdmin creates the admin socket at path with mode 0600 from the start:
// it is bound inside a fresh 0700 directory next to path, made 0600, and
// only then renamed into place, so there is no moment at which another user
// could connect (a chmod after Listen left one). The listener it returns
// refuses connections whose peer is neither this process's user nor root.
func listenAdmin(path string, log *slog.Logger) (net.Listener, error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".hppd-admin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // the file is at path now; Close removes it
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("move the socket into place: %w", err)
	}
	return &peerListener{Listener: ln, uid: os.Getuid(), log: log}, nil
}

// peerListener accepts only connections from its own uid or root.
type peerListener struct {
	net.Listener
	uid int
	log *slog.Logger
}

func (l *peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && (uid == l.uid || uid == 0) {
			return c, nil
		}
		if err != nil {
			l.log.Warn("admin socket: peer's user unknown; connection refused", "err", err)
		} else {
			l.log.Warn("admin socket: connection from another user refused", "peer_uid", uid)
		}
		c.Close()
	}
}
