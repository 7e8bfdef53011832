package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/hppd/hppd/store/boltstore"
)

// dialTimeout bounds the probe of the admin socket.
const dialTimeout = 2 * time.Second

// Open returns the backend for the data file at dbPath: the running daemon's
// admin API when something answers on socketPath, otherwise the file itself.
// A socket the caller may not use (another user's) is an error naming it; a
// file locked by a daemon whose socket does not answer is an error saying
// so, rather than a wait.
func Open(ctx context.Context, socketPath, dbPath string) (Backend, error) {
	dialErr := errors.New("no socket configured")
	if socketPath != "" {
		dctx, cancel := context.WithTimeout(ctx, dialTimeout)
		var d net.Dialer
		conn, err := d.DialContext(dctx, "unix", socketPath)
		cancel()
		if err == nil {
			conn.Close()
			return NewClient(socketPath), nil
		}
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("admin socket %s: %w (run as the user hppd runs as)", socketPath, err)
		}
		// No socket file, or one left by a daemon that is gone.
		dialErr = err
	}
	l, err := OpenLocal(dbPath)
	var le *boltstore.LockedError
	if errors.As(err, &le) {
		return nil, fmt.Errorf("%s is in use by a running hppd, but no admin socket answers at %s (%v): "+
			"set HPPD_ADMIN_SOCKET to the socket that hppd serves, or stop it", dbPath, socketPath, dialErr)
	}
	if err != nil {
		return nil, err
	}
	return l, nil
}
