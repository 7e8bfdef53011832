package klarnasim

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"sync"

	"github.com/hppd/hppd/klarna"
)

// The templates are parsed on first use: hppd links the simulator for its
// sim command, and parsing at init would cost every hppd process (serve
// too) the parser's pages and heap.
var (
	pageTemplate    = sync.OnceValue(func() *template.Template { return template.Must(template.New("page").Parse(pageHTML)) })
	messageTemplate = sync.OnceValue(func() *template.Template { return template.Must(template.New("message").Parse(messageHTML)) })
)

const pageHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em;color:#17120f}
table{border-collapse:collapse;width:100%}th,td{padding:.3em;border-bottom:1px solid #ddd;text-align:left}
td.n,th.n{text-align:right}.total{font-size:1.3em;margin:1em 0}
button{font-size:1em;margin:.2em;padding:.5em 1em}button[value=pay]{background:#ffb3c7;border:1px solid #17120f}
.meta{color:#666;font-size:.85em}
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p class="meta">Klarna simulator · session <span id="session-id">{{.SessionID}}</span> · status <span id="status">{{.Status}}</span></p>
<table id="order-lines">
<thead><tr><th>Item</th><th class="n">Quantity</th><th class="n">Unit price</th><th class="n">Total</th></tr></thead>
<tbody>
{{- range .Lines}}
<tr><td>{{.Name}}</td><td class="n">{{.Quantity}}</td><td class="n">{{.UnitPrice}}</td><td class="n">{{.Total}}</td></tr>
{{- end}}
</tbody>
</table>
<p class="total">Total <strong id="order-amount">{{.Amount}}</strong> <span class="meta">(incl. tax {{.Tax}})</span></p>
<form method="post">
<button type="submit" name="action" value="pay">Pay</button>
<button type="submit" name="action" value="decline">Decline</button>
<button type="submit" name="action" value="back">Back</button>
<button type="submit" name="action" value="cancel">Cancel</button>
<button type="submit" name="action" value="error">Error</button>
</form>
</body>
</html>
`

const messageHTML = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{{.Title}}</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:2em auto">
<h1>{{.Title}}</h1>
<p id="message">{{.Message}}</p>
</body>
</html>
`

type pageView struct {
	Title     string
	SessionID string
	Status    string
	Amount    string
	Tax       string
	Lines     []lineView
}

type lineView struct {
	Name      string
	Quantity  string
	UnitPrice string
	Total     string
}

// money formats minor units: 123456 SEK is "1234.56 SEK".
func money(minor int64, currency string) string {
	sign, v := "", uint64(minor)
	if minor < 0 {
		sign, v = "-", uint64(-minor)
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, v/100, v%100, currency)
}

func renderMessage(w http.ResponseWriter, status int, title, msg string) {
	var buf bytes.Buffer
	if err := messageTemplate().Execute(&buf, map[string]string{"Title": title, "Message": msg}); err != nil {
		http.Error(w, msg, status)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// servePage is GET /hpp/pay/{id}, the page behind redirect_url. Opening it
// puts the session IN_PROGRESS.
func (s *Sim) servePage(w http.ResponseWriter, r *http.Request) {
	now := s.Now()
	s.mu.Lock()
	h := s.liveHPP(r.PathValue("id"), now)
	var k *kpSession
	if h != nil {
		k = s.liveKP(h.kpID, now)
	}
	if h == nil || k == nil {
		s.mu.Unlock()
		renderMessage(w, http.StatusNotFound, "Payment not found", "This payment link is invalid or has expired.")
		return
	}
	if h.final() {
		status := h.status
		s.mu.Unlock()
		renderMessage(w, http.StatusConflict, "Payment closed", "This payment can no longer be changed (status "+status+").")
		return
	}
	if r.Method == http.MethodGet {
		s.setStatus(h, klarna.HPPInProgress, now)
	}
	d := k.data
	v := pageView{
		Title:     h.title,
		SessionID: h.id,
		Status:    h.status,
		Amount:    money(d.Amount, d.Currency),
		Tax:       money(d.TaxAmount, d.Currency),
	}
	for _, l := range d.Lines {
		v.Lines = append(v.Lines, lineView{
			Name:      l.Name,
			Quantity:  strings.TrimSpace(fmt.Sprintf("%d %s", l.Quantity, l.QuantityUnit)),
			UnitPrice: money(l.UnitPrice, d.Currency),
			Total:     money(l.TotalAmount, d.Currency),
		})
	}
	s.mu.Unlock()
	if v.Title == "" {
		v.Title = "Pay with Klarna"
	}
	var buf bytes.Buffer
	if err := pageTemplate().Execute(&buf, v); err != nil {
		s.log.Error("render payment page", "hpp_session_id", v.SessionID, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

// submitPage is POST /hpp/pay/{id}: a button of the page. It answers 303
// to the merchant URL of the outcome, or a page of its own when the
// merchant gave none (Klarna then shows a generic page).
func (s *Sim) submitPage(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		renderMessage(w, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return
	}
	status, target, err := s.Act(r.PathValue("id"), r.PostForm.Get("action"))
	switch {
	case errors.Is(err, ErrNotFound):
		renderMessage(w, http.StatusNotFound, "Payment not found", "This payment link is invalid or has expired.")
		return
	case errors.Is(err, ErrConflict):
		renderMessage(w, http.StatusConflict, "Payment closed", "This payment can no longer be changed (status "+status+").")
		return
	case err != nil:
		renderMessage(w, http.StatusBadRequest, "Bad request", "Unknown action.")
		return
	}
	if target != "" {
		http.Redirect(w, r, target, http.StatusSeeOther)
		return
	}
	renderMessage(w, http.StatusOK, "Klarna", "Payment status: "+status+". The merchant gave no page for this outcome.")
}

// serveOrderRedirect is the redirect_url of an order: it sends the shopper
// on to the order's confirmation URL (KP placeholders {order.id} and
// {session.id} filled in), or shows the order when there is none.
func (s *Sim) serveOrderRedirect(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	var rec *OrderRecord
	for i := range s.orders {
		if s.orders[i].OrderID == id {
			rec = &s.orders[i]
			break
		}
	}
	var target string
	if rec != nil && rec.ConfirmationURL != "" {
		target = strings.NewReplacer("{order.id}", rec.OrderID, "{session.id}", rec.KPSessionID).Replace(rec.ConfirmationURL)
	}
	found := rec != nil
	s.mu.Unlock()
	switch {
	case !found:
		renderMessage(w, http.StatusNotFound, "Order not found", "No such order.")
	case target != "":
		http.Redirect(w, r, target, http.StatusSeeOther)
	default:
		renderMessage(w, http.StatusOK, "Order placed", "Order "+id+" has been placed.")
	}
}
