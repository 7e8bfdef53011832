package bench

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
)

// Kind is what a generated session is.
type Kind int

// Session kinds of a generated data file.
const (
	// Paid: order placed; CheckAt zero (out of the poller's index), a full
	// history. Most of a merchant's file.
	Paid Kind = iota
	// Due: pending, its CheckAt passed: the poller's work.
	Due
	// Watched: pending, CheckAt ahead (within the stale period).
	Watched
)

// Plan describes a data file of Sessions sessions, created one after the
// other (ascending creation times, as a merchant's file grows): the oldest
// over the 30 days before Now, the newest Recent ones over the 40 hours
// before Now. Due and Watched sessions are pending and spread evenly over the
// Recent ones (Klarna sessions live 48 hours); every other session is paid.
// Sessions are made as hppd makes them (hpp.CreateSession, then callbacks,
// reads and the order job, through core's own transitions).
type Plan struct {
	Sessions     int
	Due, Watched int
	Recent       int // default min(Sessions, 2·(Due+Watched))
	// EventsPerSession de-duplication entries are kept for each session
	// created within EventRetention (default 72h, the poller's) before Now;
	// older ones hppd has pruned.
	EventsPerSession int
	EventRetention   time.Duration
	// Now is the clock of the file: due CheckAts lie within the hour before
	// it, watched ones within the stale period after it.
	Now  time.Time
	Seed uint64
	// Storefronts sessions are spread over (default 20).
	Storefronts int
	// Prepare, when set, may change a pending session before it is stored
	// (e.g. to give it the ids of a session that exists in the simulator).
	Prepare func(t *Target, s *core.Session)
	// TxSize is the number of sessions per write transaction (default
	// 10,000), except for the last Tail sessions, written TailTxSize
	// (default 100) at a time: a large transaction leaves many free pages
	// behind (the old copy of every page it rewrote), and the small ones
	// that follow take their new pages from those first, as a file that
	// grows by hppd's own small commits does, so the file ends with about
	// the free space such a file has. The file is written without fsync per
	// commit, then synced.
	TxSize           int
	Tail, TailTxSize int
}

// Target is a pending session of a generated file with what a callback
// needs: its ids and its callback secret.
type Target struct {
	Index   int
	ID      string
	HPPID   string
	Secret  string
	Kind    Kind
	CheckAt time.Time
}

func (p *Plan) defaults() error {
	if p.Storefronts <= 0 {
		p.Storefronts = 20
	}
	if p.TxSize <= 0 {
		p.TxSize = 10_000
	}
	if p.TailTxSize <= 0 {
		p.TailTxSize = 100
	}
	p.Tail = min(max(p.Tail, 0), p.Sessions)
	if p.EventRetention <= 0 {
		p.EventRetention = 72 * time.Hour
	}
	pending := p.Due + p.Watched
	if p.Recent <= 0 {
		p.Recent = min(p.Sessions, 2*pending)
	}
	if p.Sessions <= 0 || p.Due < 0 || p.Watched < 0 || pending > p.Recent || p.Recent > p.Sessions {
		return fmt.Errorf("bad plan: %d sessions, %d due, %d watched among the %d newest", p.Sessions, p.Due, p.Watched, p.Recent)
	}
	return nil
}

// created is session i's creation time.
func (p *Plan) created(i int) time.Time {
	const recentSpan, span = 40 * time.Hour, 30 * 24 * time.Hour
	old := p.Sessions - p.Recent
	// Steps first: span·count would overflow a Duration.
	if i < old {
		return p.Now.Add(-recentSpan - (span-recentSpan)/time.Duration(old)*time.Duration(old-i))
	}
	return p.Now.Add(-recentSpan / time.Duration(p.Recent) * time.Duration(p.Sessions-i))
}

// kindOf spreads the pending sessions evenly over the Recent newest ones:
// recent session j is the k-th pending one when (j+1)·pending/Recent passes
// an integer, and the k-th pending one is due when (k+1)·due/pending does.
func (p *Plan) kindOf(i int) Kind {
	j, pending := i-(p.Sessions-p.Recent), p.Due+p.Watched
	if j < 0 || pending == 0 || (j+1)*pending/p.Recent == j*pending/p.Recent {
		return Paid
	}
	k := j * pending / p.Recent
	if (k+1)*p.Due/pending > k*p.Due/pending {
		return Due
	}
	return Watched
}

// BuildFile writes a new store file at path following plan and returns its
// pending sessions.
func BuildFile(path string, plan Plan) ([]Target, error) {
	db, err := boltstore.Open(path, boltstore.Options{NoSync: true})
	if err != nil {
		return nil, err
	}
	targets, err := BuildStore(db, plan)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("build %s: %w", path, err)
	}
	if err := db.Close(); err != nil {
		return nil, err
	}
	if err := syncFile(path); err != nil {
		return nil, err
	}
	return targets, nil
}

// Updater is the part of store.Store that BuildStore writes through.
type Updater interface {
	Update(fn func(store.Tx) error) error
}

// BuildStore writes the sessions of plan into db, an empty store of either
// backend, through the store contract (PutSession and MarkEvent in
// transactions of plan.TxSize), and returns its pending sessions.
func BuildStore(db Updater, plan Plan) ([]Target, error) {
	if err := plan.defaults(); err != nil {
		return nil, err
	}
	r := rand.New(rand.NewPCG(plan.Seed, plan.Seed^0x5eed))
	var targets []Target
	for done := 0; done < plan.Sessions; {
		size := plan.TxSize
		if done >= plan.Sessions-plan.Tail {
			size = plan.TailTxSize
		} else {
			size = min(size, plan.Sessions-plan.Tail-done)
		}
		end := min(done+size, plan.Sessions)
		var batch []Target
		err := db.Update(func(tx store.Tx) error {
			batch = batch[:0] // Update may run fn again
			for i := done; i < end; i++ {
				kind := plan.kindOf(i)
				created := plan.created(i)
				secret := SecretFor(plan.Seed, i)
				s := NewSession(r, fmt.Sprintf("shop-%02d", r.IntN(plan.Storefronts)), created, secret)
				switch kind {
				case Paid:
					Pay(r, s, created.Add(time.Duration(30+r.IntN(300))*time.Second))
				case Due:
					s.CheckAt = plan.Now.Add(-time.Duration(1 + r.Int64N(int64(time.Hour))))
				case Watched:
					s.CheckAt = plan.Now.Add(time.Duration(1 + r.Int64N(int64(core.DefaultPolicy.StaleAfter))))
				}
				if kind != Paid {
					t := Target{Index: i, ID: s.ID, Secret: secret, Kind: kind}
					if plan.Prepare != nil {
						plan.Prepare(&t, s)
					}
					t.ID, t.HPPID, t.CheckAt = s.ID, s.HPPSessionID, s.CheckAt
					batch = append(batch, t)
				}
				if err := tx.PutSession(s); err != nil {
					return fmt.Errorf("session %d: %w", i, err)
				}
				// Marked after the session is stored, in the order callbacks
				// arrive, as hppd marks them: a callback reaches only a stored
				// session, so its mark goes into the session's record.
				for e := 0; e < plan.EventsPerSession && created.After(plan.Now.Add(-plan.EventRetention)); e++ {
					if err := tx.MarkEvent(s.HPPSessionID, uuidFrom(r), created.Add(time.Duration(e+1)*time.Microsecond)); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		targets = append(targets, batch...)
		done = end
	}
	return targets, nil
}

// SecretFor is the callback secret of session i of a file built with seed:
// 256 bits, encoded like hpp.NewSecret's, derived so that the load generator
// can present it without reading the file.
func SecretFor(seed uint64, i int) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], seed)
	binary.BigEndian.PutUint64(b[8:], uint64(i))
	sum := sha256.Sum256(append([]byte("hppd-bench callback secret\x00"), b[:]...))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

var productNames = []string{"Running shoes", "Rain jacket", "Wool socks, 3-pack", "Backpack 28 l", "Water bottle", "Headlamp", "Trail map", "Camping stove"}

// NewSession returns a pending hosted-page session the way
// hpp.CreateSession stores one once both Klarna sessions exist: a purchase
// of one to three lines with a billing address, the storefront's return
// URLs, Klarna's ids and URLs, the hash of secret and two history entries.
func NewSession(r *rand.Rand, storefront string, created time.Time, secret string) *core.Session {
	var lines []core.OrderLine
	var amount, tax int64
	for i := 0; i < 1+r.IntN(3); i++ {
		price := int64(1000 + r.IntN(200000))
		qty := int64(1 + r.IntN(3))
		total := price * qty
		lt := core.ExpectedLineTax(total, 2500)
		lines = append(lines, core.OrderLine{
			Type: "physical", Reference: fmt.Sprintf("SKU-%06d", r.IntN(1000000)), Name: productNames[r.IntN(len(productNames))],
			Quantity: qty, UnitPrice: price, TaxRate: 2500, TotalAmount: total, TotalTaxAmount: lt,
			ProductURL: fmt.Sprintf("https://%s.example.com/products/%d", storefront, r.IntN(100000)),
		})
		amount += total
		tax += lt
	}
	order := fmt.Sprintf("%s-%08d", storefront, r.IntN(100000000))
	hash := sha256.Sum256([]byte(secret))
	hppID := uuidFrom(r)
	base := "https://" + storefront + ".example.com/checkout/"
	return &core.Session{
		ID: randomID(r, "ses_"), Storefront: storefront, Integration: core.IntegrationHPP,
		PlaceOrderMode: core.ModeNone, Status: core.SessionPending,
		Purchase: core.Purchase{
			PurchaseCountry: "SE", PurchaseCurrency: "SEK", Locale: "sv-SE", OrderAmount: amount, OrderTaxAmount: tax,
			OrderLines: lines, MerchantReference1: order,
			BillingAddress: &core.Address{
				GivenName: "Anna", FamilyName: "Andersson", Email: fmt.Sprintf("customer%d@example.com", r.IntN(1000000)),
				StreetAddress: fmt.Sprintf("Storgatan %d", 1+r.IntN(99)), PostalCode: fmt.Sprintf("%03d %02d", 100+r.IntN(900), r.IntN(100)),
				City: "Stockholm", Country: "SE", Phone: fmt.Sprintf("+4670%07d", r.IntN(10000000)),
			},
		},
		ReturnURLs: core.ReturnURLs{
			Success: base + "success?order=" + order, Failure: base + "failure?order=" + order,
			Cancel: base + "cancel?order=" + order, Back: base + "back?order=" + order,
		},
		KPSessionID:     uuidFrom(r),
		HPPSessionID:    hppID,
		RedirectURL:     "https://pay.playground.klarna.com/eu/hpp/payments/" + hppID[:8],
		DistributionURL: "https://api.playground.klarna.com/hpp/v1/sessions/" + hppID + "/distribution",
		SecretHash:      hash[:],
		KlarnaStatus:    core.KlarnaWaiting,
		CreatedAt:       created, UpdatedAt: created,
		ExpiresAt: created.Add(47 * time.Hour),
		CheckAt:   created.Add(core.DefaultPolicy.StaleAfter),
		History: []core.Change{
			{At: created, To: string(core.SessionPending), Source: core.SourceAPI, Reason: "KP session created"},
			{At: created, From: string(core.SessionPending), To: string(core.SessionPending), KlarnaStatus: core.KlarnaWaiting, Source: core.SourceAPI, Reason: "HPP session created"},
		},
	}
}

// Pay takes s through what a paid purchase sees, through core's own
// transitions: an IN_PROGRESS callback, the authoritative COMPLETED read that
// authorizes it, and the order hppd places.
func Pay(r *rand.Rand, s *core.Session, at time.Time) {
	p := core.DefaultPolicy
	s.Observe(core.Observation{Source: core.SourceCallback, KlarnaStatus: core.KlarnaInProgress, KlarnaUpdatedAt: at}, at, p)
	at = at.Add(time.Duration(20+r.IntN(120))*time.Second + time.Duration(r.IntN(1e9)))
	s.Observe(core.Observation{Source: core.SourcePoller, Authoritative: true, KlarnaStatus: core.KlarnaCompleted, KlarnaUpdatedAt: at, AuthorizationToken: uuidFrom(r)}, at, p)
	s.OrderPlaced(uuidFrom(r), "ACCEPTED", at.Add(time.Duration(200+r.IntN(800))*time.Millisecond))
}

// randomID is an id as hppd makes them: prefix + 26 lowercase base32
// characters of 128 random bits.
func randomID(r *rand.Rand, prefix string) string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], r.Uint64())
	binary.LittleEndian.PutUint64(b[8:], r.Uint64())
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// uuidFrom is a version-4-shaped UUID from r (Klarna's ids look like this).
func uuidFrom(r *rand.Rand) string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], r.Uint64())
	binary.LittleEndian.PutUint64(b[8:], r.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// syncFile fsyncs a file written without per-commit fsync.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
