package core

import (
	"crypto/sha256"
	"crypto/subtle"
	"time"
)

// SessionStatus is hppd's status of a session.
type SessionStatus string

// Session statuses.
const (
	SessionPending     SessionStatus = "pending"
	SessionAuthorized  SessionStatus = "authorized"
	SessionOrderPlaced SessionStatus = "order_placed"
	SessionCancelled   SessionStatus = "cancelled"
	SessionExpired     SessionStatus = "expired"
	SessionFailed      SessionStatus = "failed"
)

// SessionStatuses lists every session status.
var SessionStatuses = []SessionStatus{SessionPending, SessionAuthorized, SessionOrderPlaced, SessionCancelled, SessionExpired, SessionFailed}

// Final reports whether no later event can change a session with this status.
func (s SessionStatus) Final() bool {
	switch s {
	case SessionOrderPlaced, SessionCancelled, SessionExpired, SessionFailed:
		return true
	}
	return false
}

// Valid reports whether s is a known status.
func (s SessionStatus) Valid() bool {
	for _, v := range SessionStatuses {
		if s == v {
			return true
		}
	}
	return false
}

// Integrations.
const (
	IntegrationHPP = "hpp" // hosted payment page: KP session + HPP session, shopper redirected
	IntegrationSDK = "sdk" // KP session only; the storefront runs Klarna's JS widget
)

// Place order modes (HPP options.place_order_mode).
const (
	ModeNone    = "NONE"
	ModePlace   = "PLACE_ORDER"
	ModeCapture = "CAPTURE_ORDER"
)

// ValidMode reports whether m is a place_order_mode.
func ValidMode(m string) bool { return m == ModeNone || m == ModePlace || m == ModeCapture }

// Klarna HPP statuses.
const (
	KlarnaWaiting       = "WAITING"
	KlarnaInProgress    = "IN_PROGRESS"
	KlarnaCompleted     = "COMPLETED"
	KlarnaFailed        = "FAILED"
	KlarnaCancelled     = "CANCELLED"
	KlarnaBack          = "BACK"
	KlarnaErrorStatus   = "ERROR"
	KlarnaDisabled      = "DISABLED"
	KlarnaManualIDCheck = "MANUAL_ID_CHECK"
)

// KlarnaStatuses are the HPP statuses of Klarna's enum.
var KlarnaStatuses = map[string]bool{
	KlarnaWaiting: true, KlarnaInProgress: true, KlarnaCompleted: true, KlarnaFailed: true,
	KlarnaCancelled: true, KlarnaBack: true, KlarnaErrorStatus: true, KlarnaDisabled: true, KlarnaManualIDCheck: true,
}

// KlarnaFinal reports whether an HPP status is final at Klarna.
func KlarnaFinal(status string) bool {
	return status == KlarnaCompleted || status == KlarnaCancelled || status == KlarnaDisabled
}

// Source says where an observation came from.
type Source string

// Sources.
const (
	SourceCallback Source = "callback"
	SourceRedirect Source = "redirect"
	SourcePoller   Source = "poller"
	SourceAPI      Source = "api"
	SourceJob      Source = "job"
)

// Disable reasons: why hppd asked Klarna to disable a session.
const (
	DisableCancel = "cancel"
	DisableExpire = "expire"
)

// Change is one entry of a session's or charge's history.
type Change struct {
	At           time.Time `json:"at"`
	From         string    `json:"from,omitempty"`
	To           string    `json:"to"`
	KlarnaStatus string    `json:"klarna_status,omitempty"`
	Source       Source    `json:"source"`
	Reason       string    `json:"reason,omitempty"`
	// FraudStatus is set on an entry that records a fraud review outcome.
	FraudStatus string `json:"fraud_status,omitempty"`
}

// Session is one Klarna purchase tracked by hppd.
//
// The bbolt store keeps pending sessions in a binary encoding of these
// fields (store/boltstore/sessioncodec.go): a new field needs a new layout
// there, and its tests fail until it has one.
type Session struct {
	ID             string        `json:"id"`
	Storefront     string        `json:"storefront"`
	ChargeID       string        `json:"charge_id,omitempty"`
	Integration    string        `json:"integration"`
	PlaceOrderMode string        `json:"place_order_mode"`
	Status         SessionStatus `json:"status"`
	// CustomerToken links the purchase to a saved token (the recovery flow).
	CustomerToken string     `json:"customer_token,omitempty"`
	Purchase      Purchase   `json:"purchase"`
	ReturnURLs    ReturnURLs `json:"return_urls"`

	KPSessionID  string `json:"kp_session_id,omitempty"`
	HPPSessionID string `json:"hpp_session_id,omitempty"`
	// HPPSessionURL is the session_url Klarna returned: reads and the
	// disable call go there (FACTS 8.7).
	HPPSessionURL   string `json:"hpp_session_url,omitempty"`
	RedirectURL     string `json:"redirect_url,omitempty"`
	QRCodeURL       string `json:"qr_code_url,omitempty"`
	DistributionURL string `json:"distribution_url,omitempty"`
	ClientToken     string `json:"client_token,omitempty"`
	// SecretHash is the SHA-256 of the callback secret; the secret itself is
	// never stored. With integration sdk it is the secret of the KP
	// authorization callback (merchant_urls.authorization).
	SecretHash []byte `json:"secret_hash,omitempty"`
	// NotifySecretHash is the SHA-256 of the secret in the order's
	// merchant_urls.notification, set with the place_order job.
	NotifySecretHash []byte `json:"notify_secret_hash,omitempty"`

	// KlarnaAccount names the Klarna account the session was created at;
	// every later Klarna call for it goes there. Empty (records written
	// before hppd knew several accounts): the default account.
	KlarnaAccount string `json:"klarna_account,omitempty"`

	KlarnaStatus       string       `json:"klarna_status,omitempty"`
	KlarnaUpdatedAt    time.Time    `json:"klarna_updated_at,omitzero"`
	AuthorizationToken string       `json:"authorization_token,omitempty"`
	AuthorizedAt       time.Time    `json:"authorized_at,omitzero"`
	OrderID            string       `json:"order_id,omitempty"`
	FraudStatus        string       `json:"fraud_status,omitempty"`
	Error              *KlarnaError `json:"error,omitempty"`
	DisableReason      string       `json:"disable_reason,omitempty"`
	// AuthorizationTokenHash is the SHA-256 of AuthorizationToken, kept
	// once the order is placed and the token itself dropped from the
	// record (it authorizes an order; nothing needs it after that), so a
	// repeated authorization can still be told from another one.
	AuthorizationTokenHash []byte `json:"authorization_token_sha256,omitempty"`
	// OrderIDUnknown: Klarna said the order exists (a replay after a lost
	// answer) but hppd could not learn its id; OrderID is then empty and the
	// merchant finds the order in Klarna's portal by the session id in
	// merchant_reference1 or merchant_reference2.
	OrderIDUnknown bool `json:"order_id_unknown,omitempty"`

	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// CheckAt is when the poller should next re-read the session from Klarna;
	// zero once nothing is left to watch. The store indexes it.
	CheckAt time.Time `json:"check_at,omitzero"`
	// Rereads counts the routine re-reads scheduled since the last news of
	// the session (a callback, a redirect, a change of Klarna's status): it
	// is the session's position in Policy.Schedule, kept with the session so
	// the back-off survives a restart.
	Rereads int `json:"rereads,omitempty"`
	// Sequence counts the storefront events about the session: the n-th
	// event carries n (NextEvent). It is stored with the session, so it
	// keeps counting across restarts.
	Sequence int64    `json:"sequence,omitempty"`
	History  []Change `json:"history"`
}

// NextEvent counts one more storefront event about the session and returns
// its sequence number (1 for the first).
func (s *Session) NextEvent() int64 {
	s.Sequence++
	return s.Sequence
}

// Policy holds the timing rules of session tracking.
type Policy struct {
	// StaleAfter: a non-final session with no news for this long is re-read.
	// With a Schedule it is the first gap of it.
	StaleAfter time.Duration
	// Schedule holds the gaps between routine re-reads of a session with no
	// news, the last one repeating; empty means StaleAfter every time.
	Schedule []time.Duration
	// ExpiryMargin: a session still pending this long before it expires is
	// disabled at Klarna and marked expired.
	ExpiryMargin time.Duration
}

// DefaultPolicy is the policy with the documented defaults.
var DefaultPolicy = Policy{StaleAfter: 2 * time.Minute, ExpiryMargin: 10 * time.Minute}

// DefaultSchedule is the default re-read schedule (HPPD_STALE_AFTER). Over
// an HPP session's 47 h life it makes 143 routine re-reads (Klarna's budget
// allows about 150 per abandoned session at a large merchant), and no gap is
// over 20 minutes, so a payment whose callback and redirect were both lost is
// found well inside its 60 minute authorization (FACTS 1.8).
var DefaultSchedule = []time.Duration{time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 20 * time.Minute}

// Gap is the wait before routine re-read number n+1 of a session with no
// news after n of them.
func (p Policy) Gap(n int) time.Duration {
	if len(p.Schedule) == 0 {
		return p.StaleAfter
	}
	return p.Schedule[max(0, min(n, len(p.Schedule)-1))]
}

// MaxGap is the longest gap of the schedule.
func (p Policy) MaxGap() time.Duration {
	g := p.StaleAfter
	for _, d := range p.Schedule {
		g = max(g, d)
	}
	return g
}

// Observation is something hppd learnt about a session's state at Klarna.
type Observation struct {
	Source Source
	// Authoritative is true when the state was read from Klarna by hppd (HPP or
	// KP read, an order placed); false for unsigned hints such as callbacks.
	Authoritative      bool
	KlarnaStatus       string
	KlarnaUpdatedAt    time.Time
	AuthorizationToken string
	OrderID            string
	// Gone: Klarna answered 404 (expired or unknown).
	Gone   bool
	Reason string
}

// Job ids derived from what the job is for, so each exists at most once.
func PlaceOrderJobID(sessionID string) string { return "place_order/" + sessionID }
func SyncJobID(sessionID string) string       { return "sync_session/" + sessionID }
func DisableJobID(sessionID string) string    { return "disable_session/" + sessionID }

// setStatus moves the session and records history.
func (s *Session) setStatus(to SessionStatus, src Source, reason string, now time.Time) {
	s.History = append(s.History, Change{At: now, From: string(s.Status), To: string(to), KlarnaStatus: s.KlarnaStatus, Source: src, Reason: reason})
	s.Status = to
	s.UpdatedAt = now
	if to.Final() {
		s.CheckAt = time.Time{}
	}
	if to == SessionOrderPlaced && s.AuthorizationToken != "" {
		h := sha256.Sum256([]byte(s.AuthorizationToken))
		s.AuthorizationTokenHash = h[:]
		s.AuthorizationToken = ""
	}
}

// AuthorizedWith reports, in constant time, whether tok is the session's
// authorization token: the token itself while the session holds it, its hash
// once the order is placed.
func (s *Session) AuthorizedWith(tok string) bool {
	if s.AuthorizationToken != "" {
		return subtle.ConstantTimeCompare([]byte(s.AuthorizationToken), []byte(tok)) == 1
	}
	if len(s.AuthorizationTokenHash) == sha256.Size {
		h := sha256.Sum256([]byte(tok))
		return subtle.ConstantTimeCompare(h[:], s.AuthorizationTokenHash) == 1
	}
	return false
}

// setKlarnaStatus records Klarna's status; it returns whether it changed.
func (s *Session) setKlarnaStatus(ks string, src Source, now time.Time) bool {
	if ks == "" || ks == s.KlarnaStatus {
		return false
	}
	s.History = append(s.History, Change{At: now, From: string(s.Status), To: string(s.Status), KlarnaStatus: ks, Source: src})
	s.KlarnaStatus = ks
	s.UpdatedAt = now
	return true
}

// nextCheck is when a pending session should be looked at again.
func (s *Session) nextCheck(now time.Time, p Policy) time.Time {
	t := now.Add(p.Gap(s.Rereads))
	if exp := s.ExpiresAt.Add(-p.ExpiryMargin); !s.ExpiresAt.IsZero() && exp.Before(t) {
		t = exp
	}
	return t
}

// Observe applies what hppd learnt about the session at Klarna. It returns
// whether the session changed and the jobs that must be written with it. It is
// the only place session statuses move; final statuses absorb everything.
func (s *Session) Observe(o Observation, now time.Time, p Policy) (changed bool, jobs []Job) {
	if s.Status.Final() {
		return false, nil
	}
	// Out-of-order hints: a callback older than what we know is ignored.
	if !o.KlarnaUpdatedAt.IsZero() && !s.KlarnaUpdatedAt.IsZero() && o.KlarnaUpdatedAt.Before(s.KlarnaUpdatedAt) && !o.Authoritative {
		return false, nil
	}
	if s.Status == SessionPending {
		if o.Source == SourceCallback || o.Source == SourceRedirect || (o.KlarnaStatus != "" && s.KlarnaStatus != "" && o.KlarnaStatus != s.KlarnaStatus) {
			s.Rereads = 0 // news: the re-read schedule starts again
		}
		s.CheckAt = s.nextCheck(now, p)
		changed = true // news pushes the next re-read back
	}
	if !o.Authoritative {
		if KlarnaFinal(o.KlarnaStatus) {
			// An unsigned claim of a final status: re-read before acting.
			if s.Status == SessionPending {
				jobs = append(jobs, Job{ID: SyncJobID(s.ID), Kind: JobSyncSession, SessionID: s.ID, DueAt: now, CreatedAt: now, Source: o.Source})
			}
			return changed, jobs
		}
		if s.Status == SessionPending && KlarnaStatuses[o.KlarnaStatus] {
			if !o.KlarnaUpdatedAt.IsZero() {
				s.KlarnaUpdatedAt = o.KlarnaUpdatedAt
			}
			s.setKlarnaStatus(o.KlarnaStatus, o.Source, now)
		}
		return changed, jobs
	}

	if !o.KlarnaUpdatedAt.IsZero() && o.KlarnaUpdatedAt.After(s.KlarnaUpdatedAt) {
		s.KlarnaUpdatedAt = o.KlarnaUpdatedAt
	}
	if o.Gone {
		if s.Status == SessionPending {
			reason := o.Reason
			if reason == "" {
				reason = "klarna no longer knows the session (expired)"
			}
			s.setStatus(SessionExpired, o.Source, reason, now)
			return true, nil
		}
		return changed, nil
	}
	s.setKlarnaStatus(o.KlarnaStatus, o.Source, now)
	switch o.KlarnaStatus {
	case KlarnaCompleted:
		if o.OrderID != "" || s.PlaceOrderMode == ModePlace || s.PlaceOrderMode == ModeCapture {
			if o.OrderID == "" {
				// PLACE/CAPTURE but no order id yet: read again soon.
				jobs = append(jobs, Job{ID: SyncJobID(s.ID), Kind: JobSyncSession, SessionID: s.ID, DueAt: now.Add(time.Second), CreatedAt: now, Source: o.Source})
				return true, jobs
			}
			s.OrderID = o.OrderID
			s.setStatus(SessionOrderPlaced, o.Source, "klarna placed the order", now)
			return true, nil
		}
		if s.Status != SessionPending {
			return changed, nil
		}
		if o.AuthorizationToken == "" {
			jobs = append(jobs, Job{ID: SyncJobID(s.ID), Kind: JobSyncSession, SessionID: s.ID, DueAt: now.Add(time.Second), CreatedAt: now, Source: o.Source})
			return true, jobs
		}
		s.AuthorizationToken = o.AuthorizationToken
		s.AuthorizedAt = now
		s.CheckAt = time.Time{}
		s.setStatus(SessionAuthorized, o.Source, "klarna authorized the purchase", now)
		jobs = append(jobs, Job{ID: PlaceOrderJobID(s.ID), Kind: JobPlaceOrder, SessionID: s.ID, DueAt: now, CreatedAt: now, Source: o.Source})
		return true, jobs
	case KlarnaCancelled:
		s.setStatus(SessionCancelled, o.Source, "cancelled at klarna", now)
		return true, nil
	case KlarnaDisabled:
		if s.Status != SessionPending {
			return changed, nil
		}
		if s.DisableReason == DisableCancel {
			s.setStatus(SessionCancelled, o.Source, "disabled at the storefront's request", now)
		} else {
			s.setStatus(SessionExpired, o.Source, "disabled at klarna", now)
		}
		return true, nil
	}
	return changed, nil
}

// OrderPlaced records the order hppd placed for an authorized session.
func (s *Session) OrderPlaced(orderID, fraudStatus string, now time.Time) bool {
	if s.Status.Final() {
		return false
	}
	s.OrderID = orderID
	s.FraudStatus = fraudStatus
	s.setStatus(SessionOrderPlaced, SourceJob, "order placed", now)
	return true
}

// OrderExists records an order Klarna says exists although hppd did not get
// the answer that placed it (FACTS 8.2): orderID is what hppd could learn of
// it, "" when nothing (OrderIDUnknown). The session is order_placed either way.
func (s *Session) OrderExists(orderID, reason string, now time.Time) bool {
	if s.Status.Final() {
		return false
	}
	s.OrderID = orderID
	s.OrderIDUnknown = orderID == ""
	s.setStatus(SessionOrderPlaced, SourceJob, reason, now)
	return true
}

// Fail moves a non-final session to failed, keeping Klarna's refusal.
func (s *Session) Fail(kerr *KlarnaError, src Source, reason string, now time.Time) bool {
	if s.Status.Final() {
		return false
	}
	s.Error = kerr
	s.setStatus(SessionFailed, src, reason, now)
	return true
}

// RequestDisable marks a pending session to be disabled at Klarna (storefront
// cancel, or expiry) and returns the job that does it. It returns no job when
// the session is past that point.
func (s *Session) RequestDisable(reason string, src Source, now time.Time) []Job {
	if s.Status != SessionPending || s.DisableReason != "" {
		return nil
	}
	s.DisableReason = reason
	s.UpdatedAt = now
	s.History = append(s.History, Change{At: now, From: string(s.Status), To: string(s.Status), KlarnaStatus: s.KlarnaStatus, Source: src, Reason: "disable requested: " + reason})
	return []Job{{ID: DisableJobID(s.ID), Kind: JobDisableSession, SessionID: s.ID, DueAt: now, CreatedAt: now, Source: src}}
}

// Disabled records that Klarna disabled the session at hppd's request.
func (s *Session) Disabled(src Source, now time.Time) bool {
	if s.Status.Final() {
		return false
	}
	s.KlarnaStatus = KlarnaDisabled
	if s.DisableReason == DisableCancel {
		s.setStatus(SessionCancelled, src, "cancelled by the storefront", now)
	} else {
		s.setStatus(SessionExpired, src, "no final status before expiry", now)
	}
	return true
}

// RereadScheduled records that a routine re-read of the pending session was
// scheduled now and sets its next check one gap of the schedule later.
func (s *Session) RereadScheduled(now time.Time, p Policy) {
	s.Rereads++
	s.CheckAt = s.nextCheck(now, p)
}

// ExpiryDue reports whether a pending session must now be given up.
func (s *Session) ExpiryDue(now time.Time, p Policy) bool {
	return s.Status == SessionPending && !s.ExpiresAt.IsZero() && !now.Before(s.ExpiresAt.Add(-p.ExpiryMargin))
}
