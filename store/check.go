package store

import (
	"errors"
	"strings"

	"github.com/hppd/hppd/core"
)

// MaxKeyLen bounds the ids, storefront names, keys and Klarna session ids a
// store accepts. Every implementation refuses the same records with the same
// errors (core.Invalid naming the field), so the checks live here, in the
// contract, and each implementation calls them before it writes.
const MaxKeyLen = 1024

// CheckID validates a required id-like field of at most MaxKeyLen bytes.
func CheckID(field, v string) error {
	if v == "" {
		return core.Invalid(field, "is required")
	}
	if len(v) > MaxKeyLen {
		return core.Invalid(field, "is longer than %d bytes", MaxKeyLen)
	}
	return nil
}

// CheckStorefront validates a storefront name. It prefixes keys, so it may
// not hold a NUL byte (the separator of keys that start with it).
func CheckStorefront(v string) error {
	if err := CheckID("storefront", v); err != nil {
		return err
	}
	if strings.IndexByte(v, 0) >= 0 {
		return core.Invalid("storefront", "must not contain a NUL byte")
	}
	return nil
}

// CheckSession validates what a store requires of a session it writes.
func CheckSession(s *core.Session) error {
	if s == nil {
		return errors.New("store: put session: nil")
	}
	if err := CheckID("id", s.ID); err != nil {
		return err
	}
	if err := CheckStorefront(s.Storefront); err != nil {
		return err
	}
	if !s.Status.Valid() {
		return core.Invalid("status", "%q is not a session status", s.Status)
	}
	if len(s.HPPSessionID) > MaxKeyLen {
		return core.Invalid("hpp_session_id", "is longer than %d bytes", MaxKeyLen)
	}
	if len(s.KPSessionID) > MaxKeyLen {
		return core.Invalid("kp_session_id", "is longer than %d bytes", MaxKeyLen)
	}
	return nil
}

// CheckCharge validates what a store requires of a charge it writes.
func CheckCharge(c *core.Charge) error {
	if c == nil {
		return errors.New("store: put charge: nil")
	}
	if err := CheckID("id", c.ID); err != nil {
		return err
	}
	if err := CheckStorefront(c.Storefront); err != nil {
		return err
	}
	if !c.Status.Valid() {
		return core.Invalid("status", "%q is not a charge status", c.Status)
	}
	return nil
}

// CountedJobKinds are the job kinds Counts always reports, zero when none is
// stored.
var CountedJobKinds = []core.JobKind{core.JobPlaceOrder, core.JobSyncSession, core.JobDisableSession, core.JobRetryCharge, core.JobDeliverEvent, core.JobRereadSession}

// ZeroCounts returns the maps Counts fills: every session and charge status
// and every counted job kind, at zero, so each implementation reports the
// same keys whatever it stores.
func ZeroCounts() (sessions map[core.SessionStatus]int, charges map[core.ChargeStatus]int, jobs map[core.JobKind]int) {
	sessions = make(map[core.SessionStatus]int, len(core.SessionStatuses))
	for _, s := range core.SessionStatuses {
		sessions[s] = 0
	}
	charges = make(map[core.ChargeStatus]int, len(core.ChargeStatuses))
	for _, s := range core.ChargeStatuses {
		charges[s] = 0
	}
	jobs = make(map[core.JobKind]int, len(CountedJobKinds))
	for _, k := range CountedJobKinds {
		jobs[k] = 0
	}
	return sessions, charges, jobs
}
