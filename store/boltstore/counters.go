package boltstore

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// Counter keys are "session/<status>", "charge/<status>" and "job/<kind>";
// values are big-endian int64 counts. A count that reaches zero is deleted.

func (tx *Tx) addCounter(key string, delta int64) error {
	b, err := tx.bucket(bucketCounters)
	if err != nil {
		return err
	}
	n, err := counterValue(b.Get([]byte(key)))
	if err != nil {
		return fmt.Errorf("store: counter %s: %w", key, err)
	}
	n += delta
	if n == 0 {
		return b.Delete([]byte(key))
	}
	return b.Put([]byte(key), be64(uint64(n)))
}

func counterValue(v []byte) (int64, error) {
	if v == nil {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("bad counter value %x", v)
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// Counts returns how many sessions are in each status, charges in each
// status and jobs of each kind. The counters are kept by the transactions
// that change them, so this reads one small bucket. Every known status and
// kind is present, zero or not.
func (tx *Tx) Counts() (sessions map[core.SessionStatus]int, charges map[core.ChargeStatus]int, jobs map[core.JobKind]int, err error) {
	sessions, charges, jobs = store.ZeroCounts()
	b, err := tx.bucket(bucketCounters)
	if err != nil {
		return nil, nil, nil, err
	}
	err = b.ForEach(func(k, v []byte) error {
		n, err := counterValue(v)
		if err != nil {
			return fmt.Errorf("store: counter %s: %w", k, err)
		}
		kind, name, _ := strings.Cut(string(k), "/")
		switch kind {
		case "session":
			sessions[core.SessionStatus(name)] = int(n)
		case "charge":
			charges[core.ChargeStatus(name)] = int(n)
		case "job":
			jobs[core.JobKind(name)] = int(n)
		default:
			return fmt.Errorf("store: unknown counter %s", k)
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return sessions, charges, jobs, nil
}
