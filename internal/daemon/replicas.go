package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"
)

// Replicas: on PostgreSQL several hppd processes share the store and the
// Klarna accounts. Each one registers with a heartbeat (pgstore.Heartbeat)
// and runs its Klarna clients at 1/N of the configured rates, N the replicas
// seen alive, so N replicas never send N times Klarna's limit; Klarna's 429
// with Retry-After stays the backstop. The same beat gives the flows the
// same 1/N (hpp.Service.SetShare), which divides each storefront's share of
// an account (HPPD_CONFIG_FILE's klarna_share) and the routine re-read rate
// (HPPD_REREAD_SHARE): beat is the one place that knows N. A joining replica waits two
// heartbeats after registering before it calls Klarna, so that every other
// replica has counted it and lowered its share first. Each replica also
// LISTENs for the job wake-ups the others' commits send, so work committed
// anywhere runs without waiting for a tick.

// DefaultReplicaHeartbeat is how often a replica beats; a replica not seen
// for three beats no longer counts.
const DefaultReplicaHeartbeat = 2 * time.Second

func (m *Main) heartbeat() time.Duration {
	return orDefault(m.ReplicaHeartbeat, DefaultReplicaHeartbeat)
}

// joinReplicas registers this process, waits until the others have counted
// it and takes its share of every Klarna account's rates.
func (m *Main) joinReplicas(ctx context.Context) error {
	var b [8]byte
	_, _ = rand.Read(b[:])
	m.replicaID = "rep_" + hex.EncodeToString(b[:])
	m.replicaStart = m.Now()
	if _, err := m.PG.Heartbeat(ctx, m.replicaID, m.replicaStart, time.Now(), 3*m.heartbeat()); err != nil {
		return err
	}
	select {
	case <-time.After(2 * m.heartbeat()):
	case <-ctx.Done():
		return ctx.Err()
	}
	return m.beat(ctx)
}

// beat heartbeats and sets the share of every Klarna client.
func (m *Main) beat(ctx context.Context) error {
	n, err := m.PG.Heartbeat(ctx, m.replicaID, m.replicaStart, time.Now(), 3*m.heartbeat())
	if err != nil {
		return err
	}
	share := 1 / float64(n)
	for _, a := range m.KlarnaAccounts {
		a.Client.SetShare(share)
	}
	m.Service.SetShare(share)
	// The count is published after the shares are set: whoever sees N
	// replicas sees every rate already divided by N.
	if old := m.replicas.Swap(int64(n)); old != int64(n) {
		m.Logger.Info("replicas", "count", n, "klarna_share", share)
	}
	return nil
}

// Replicas is how many replicas this one counted at its last heartbeat (0
// on bbolt).
func (m *Main) Replicas() int { return int(m.replicas.Load()) }

// runReplicas beats until ctx ends and listens for job wake-ups.
func (m *Main) runReplicas(ctx context.Context) {
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(m.heartbeat())
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := m.beat(ctx); err != nil && ctx.Err() == nil {
				// The last share stays: the others cannot have grown
				// theirs without seeing this replica go quiet.
				m.Logger.Warn("replica heartbeat failed", "err", err)
			}
		}
	}()
	go func() {
		defer m.wg.Done()
		m.PG.Listen(ctx, m.heartbeat(), m.Service.Wake)
	}()
}

// leaveReplicas removes this replica's row so the others take up its share
// at their next heartbeat.
func (m *Main) leaveReplicas() {
	if m.PG == nil || m.replicaID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := m.PG.Leave(ctx, m.replicaID); err != nil {
		m.Logger.Warn("leaving the replicas failed; the others count this one until its heartbeat ages out", "err", err)
	}
}
