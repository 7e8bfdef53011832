package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hppd/hppd/api"
	"github.com/hppd/hppd/core"
)

// WriteJSON writes v as indented JSON (the --json output).
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // URLs and <redacted> as they are
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table aligns columns for people.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		t.raw(header...)
	}
	return t
}

func (t *table) raw(cells ...string) { fmt.Fprintln(t.tw, strings.Join(cells, "\t")) }

// row writes cells made safe for a terminal.
func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = cell(c)
	}
	t.raw(cells...)
}

func (t *table) flush() error { return t.tw.Flush() }

// cell makes a value safe for one table cell: "-" when empty, whitespace
// controls (tabs, newlines) as spaces and other control characters (terminal
// escapes in data a storefront or Klarna sent) as "?".
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return ' '
		case unicode.IsControl(r) || r == utf8.RuneError:
			return '?'
		}
		return r
	}, s)
}

// short cuts s to n runes.
func short(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// amount shows minor units as major units (every Klarna currency has two
// decimals).
func amount(minor int64, currency string) string {
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, minor/100, minor%100, currency)
}

func itoa(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// WriteSessions writes sessions as a table.
func WriteSessions(w io.Writer, list []Session) error {
	t := newTable(w, "ID", "STOREFRONT", "STATUS", "KLARNA", "MODE", "AMOUNT", "CREATED", "ORDER")
	for _, s := range list {
		t.row(s.ID, s.Storefront, s.Status, s.KlarnaStatus, s.PlaceOrderMode, amount(s.OrderAmount, s.PurchaseCurrency), ts(s.CreatedAt), s.OrderID)
	}
	return t.flush()
}

func klarnaError(e *api.Error) string {
	if e == nil {
		return ""
	}
	s := strconv.Itoa(e.HTTPStatus)
	if e.ErrorCode != "" {
		s += " " + e.ErrorCode
	}
	if len(e.ErrorMessages) > 0 {
		s += ": " + strings.Join(e.ErrorMessages, "; ")
	}
	if e.CorrelationID != "" {
		s += " (correlation id " + e.CorrelationID + ")"
	}
	return s
}

func writeHistory(w io.Writer, h []core.Change) error {
	fmt.Fprintln(w, "\nHISTORY")
	t := newTable(w, "AT", "FROM", "TO", "KLARNA", "SOURCE", "REASON")
	for _, c := range h {
		t.row(ts(c.At), c.From, c.To, c.KlarnaStatus, string(c.Source), c.Reason)
	}
	return t.flush()
}

// WriteSession writes one session and its history.
func WriteSession(w io.Writer, s *Session) error {
	t := newTable(w)
	for _, kv := range [][2]string{
		{"ID", s.ID}, {"Storefront", s.Storefront}, {"Status", s.Status}, {"Klarna status", s.KlarnaStatus},
		{"Integration", s.Integration}, {"Place order mode", s.PlaceOrderMode},
		{"Amount", amount(s.OrderAmount, s.PurchaseCurrency)}, {"Country", s.PurchaseCountry},
		{"Merchant reference", s.MerchantRef1}, {"KP session", s.Klarna.KPSessionID}, {"HPP session", s.Klarna.HPPSessionID},
		{"Redirect URL", s.RedirectURL}, {"Order", s.OrderID}, {"Fraud status", s.FraudStatus},
		{"Charge", s.ChargeID}, {"Klarna account", s.KlarnaAccount}, {"Customer token", s.CustomerToken}, {"Klarna error", klarnaError(s.Error)},
		{"Disable reason", s.DisableReason}, {"Created", ts(s.CreatedAt)}, {"Updated", ts(s.UpdatedAt)},
		{"Expires", ts(s.ExpiresAt)}, {"Next check", ts(s.CheckAt)},
	} {
		t.row(kv[0]+":", kv[1])
	}
	if err := t.flush(); err != nil {
		return err
	}
	return writeHistory(w, s.History)
}

// WriteCharges writes charges as a table.
func WriteCharges(w io.Writer, list []Charge) error {
	t := newTable(w, "ID", "STOREFRONT", "STATUS", "TOKEN", "AMOUNT", "RETRIES", "CREATED", "ORDER", "SESSION")
	for _, c := range list {
		sess := ""
		if c.Session != nil {
			sess = c.Session.ID
		}
		t.row(c.ID, c.Storefront, c.Status, c.CustomerToken, amount(c.OrderAmount, c.PurchaseCurrency),
			strconv.Itoa(c.Retries), ts(c.CreatedAt), c.OrderID, sess)
	}
	return t.flush()
}

// WriteCharge writes one charge with its attempts and history.
func WriteCharge(w io.Writer, c *Charge) error {
	sess := ""
	if c.Session != nil {
		sess = c.Session.ID
		if c.Session.Status != "" {
			sess += " (" + c.Session.Status + ")"
		}
	}
	errText := c.ErrorCode
	if len(c.ErrorMessages) > 0 {
		errText += ": " + strings.Join(c.ErrorMessages, "; ")
	}
	t := newTable(w)
	for _, kv := range [][2]string{
		{"ID", c.ID}, {"Storefront", c.Storefront}, {"Status", c.Status}, {"Customer token", c.CustomerToken},
		{"Customer present", strconv.FormatBool(c.CustomerPresent)}, {"Amount", amount(c.OrderAmount, c.PurchaseCurrency)},
		{"Merchant reference", c.MerchantRef1}, {"Order", c.OrderID}, {"Fraud status", c.FraudStatus},
		{"Klarna error", errText}, {"Klarna account", c.KlarnaAccount}, {"Fallback session", sess}, {"Retries", strconv.Itoa(c.Retries)},
		{"Created", ts(c.CreatedAt)}, {"Updated", ts(c.UpdatedAt)},
	} {
		t.row(kv[0]+":", kv[1])
	}
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nATTEMPTS")
	t = newTable(w, "AT", "IDEMPOTENCY KEY", "RESULT", "HTTP", "ERROR", "CORRELATION ID")
	for _, a := range c.Attempts {
		t.row(ts(a.At), a.IdempotencyKey, a.Result, itoa(a.HTTPStatus), a.ErrorCode, a.CorrelationID)
	}
	if err := t.flush(); err != nil {
		return err
	}
	return writeHistory(w, c.History)
}

// WriteJobs writes jobs as a table (long errors cut; --json has them whole).
func WriteJobs(w io.Writer, list []Job) error {
	t := newTable(w, "ID", "KIND", "DUE", "ATTEMPTS", "LAST ATTEMPT", "LAST ERROR")
	for _, j := range list {
		t.row(j.ID, string(j.Kind), ts(j.DueAt), strconv.Itoa(j.Attempts), ts(j.LastAttemptAt), short(j.LastError, 100))
	}
	return t.flush()
}

// WriteChecks writes the lines of `hppd check`.
func WriteChecks(w io.Writer, checks []Check) error {
	t := newTable(w, "CHECK", "RESULT", "DETAIL")
	for _, c := range checks {
		t.row(c.Name, c.Result, c.Detail)
	}
	return t.flush()
}

// WriteConfig writes the effective configuration.
func WriteConfig(w io.Writer, vars []ConfigVar) error {
	t := newTable(w, "VARIABLE", "VALUE", "SOURCE")
	for _, v := range vars {
		t.row(v.Name, v.Value, v.Source)
	}
	return t.flush()
}

// WriteConfiguration writes the variables, then every Klarna account and
// every storefront of HPPD_CONFIG_FILE.
func WriteConfiguration(w io.Writer, c Configuration) error {
	if err := WriteConfig(w, c.Variables); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nKLARNA ACCOUNTS")
	t := newTable(w, "NAME", "SOURCE", "ENVIRONMENT", "BASE URL", "COUNTRIES", "RATES", "PASSWORD")
	for _, a := range c.KlarnaAccounts {
		countries := strings.Join(a.Countries, ",")
		if countries == "" {
			countries = "(any not claimed)"
		}
		t.row(a.Name, a.Source, a.Environment, a.BaseURL, countries, a.Rates, a.Password)
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(c.Storefronts) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nSTOREFRONTS")
	t = newTable(w, "NAME", "KLARNA ACCOUNTS", "JWT HS256 KEYS", "JWT PUBLIC KEYS", "EVENTS", "EVENTS SECRET")
	for _, s := range c.Storefronts {
		accounts := strings.Join(s.KlarnaAccounts, ",")
		if s.KlarnaAccounts == nil {
			accounts = "(all)"
		}
		t.row(s.Name, accounts, s.JWTHS256KeyFile, s.JWTPublicKeysFile, s.EventsURL, s.EventsSecret)
	}
	return t.flush()
}
