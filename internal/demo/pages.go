package demo

import (
	"html/template"
	"time"

	"github.com/hppd/hppd/core"
)

// badge picks the colour of a status.
func badge(status string) string {
	switch status {
	case string(core.ChargeCharged), string(core.ChargeRecovered), string(core.SessionOrderPlaced), core.KlarnaCompleted:
		return "good"
	case string(core.ChargeFailed), string(core.SessionCancelled), string(core.SessionExpired),
		core.AttemptDeclined, core.AttemptUnavailable, core.AttemptFinal,
		core.KlarnaFailed, core.KlarnaCancelled, core.KlarnaDisabled, core.KlarnaErrorStatus:
		return "bad"
	}
	return "wait"
}

// dict builds the data of a nested template from key, value pairs.
func dict(kv ...any) map[string]any {
	m := make(map[string]any, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		if k, ok := kv[i].(string); ok {
			m[k] = kv[i+1]
		}
	}
	return m
}

var pages = template.Must(template.New("pages").Funcs(template.FuncMap{
	"money": money,
	"badge": badge,
	"dict":  dict,
	"clock": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Local().Format("15:04:05.000")
	},
}).Parse(`
{{define "head"}}<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{{- if .Refresh}}
<meta http-equiv="refresh" content="1">
{{- end}}
<title>{{.Title}} · hppd demo shop</title>
<style>
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:64em;margin:0 auto;padding:0 1.5em 2em;color:#17120f;background:#faf8f7;line-height:1.45}
header{display:flex;justify-content:space-between;align-items:baseline;border-bottom:3px solid #ffb3c7;margin-bottom:1.2em;padding:.8em 0 .4em}
header a{color:inherit;text-decoration:none;font-weight:700;font-size:1.3em}
header span{color:#6b6461;font-size:.9em}
h1{font-size:1.5em;margin:.2em 0 .5em}
h2{font-size:1.15em;margin:0 0 .5em}
h3{font-size:1em;margin:1em 0 .3em}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(14em,1fr));gap:1em;margin:1em 0}
.card{background:#fff;border:1px solid #e3dedb;border-radius:10px;padding:1em 1.1em;display:flex;flex-direction:column;min-width:0;overflow-wrap:anywhere}
.card p{flex:1;color:#4a4341;font-size:.92em;margin:.3em 0 1em}
.stack{display:grid;grid-template-columns:1fr;gap:1em;margin-bottom:1em}
.stack .card{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.9em;background:#fff}
th,td{text-align:left;padding:.35em .5em;border-bottom:1px solid #eee;vertical-align:top}
th{color:#6b6461;font-weight:600}
td.n,th.n{text-align:right}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25em 1em;margin:0;font-size:.92em}
dt{color:#6b6461}dd{margin:0;overflow-wrap:anywhere}
.badge{display:inline-block;padding:.05em .65em;border-radius:1em;font-size:.88em;font-weight:600;white-space:nowrap}
.good{background:#d4f3e1;color:#14532d}.bad{background:#fbdad6;color:#7f1d1d}.wait{background:#fdebcc;color:#7c4a03}
.banner{border-radius:10px;padding:.8em 1.1em;margin-bottom:1em;background:#fff;border:1px solid #e3dedb}
.tone-good{border-left:6px solid #22a060}.tone-wait{border-left:6px solid #e0a020}.tone-bad{border-left:6px solid #d04040}
button,a.button{font:inherit;font-weight:600;padding:.5em 1.3em;border-radius:8px;border:1px solid #17120f;background:#ffb3c7;color:#17120f;cursor:pointer;text-decoration:none;display:inline-block}
button.plain{background:#fff}
.actions{display:flex;gap:.6em;align-items:center;flex-wrap:wrap;margin:.6em 0 0}
.actions form{margin:0}
.muted{color:#6b6461;font-size:.88em}
pre{background:#f3f0ee;padding:.8em;overflow:auto;font-size:.78em;border-radius:6px;max-height:28em}
code{font-size:.92em}
.problem{background:#fbdad6;border-radius:8px;padding:.5em .8em}
</style>
</head>
<body>
<header><a href="/">☕ hppd demo shop</a><span>a storefront of hppd's demo</span></header>
{{end}}

{{define "foot"}}
<p class="muted">Payments go through hppd's storefront API; Klarna is played by hppd's simulator.</p>
</body>
</html>
{{end}}

{{define "index"}}{{template "head" (dict "Title" "Shop")}}
<h1>Your cart</h1>
<table id="cart">
<thead><tr><th>Item</th><th class="n">Quantity</th><th class="n">Unit price</th><th class="n">VAT</th><th class="n">Total</th></tr></thead>
<tbody>
{{- range .Cart.OrderLines}}
<tr><td>{{.Name}}</td><td class="n">{{.Quantity}}</td><td class="n">{{money .UnitPrice "SEK"}}</td><td class="n">{{money .TotalTaxAmount "SEK"}}</td><td class="n">{{money .TotalAmount "SEK"}}</td></tr>
{{- end}}
<tr><th colspan="4">Total (incl. VAT {{.Tax}})</th><th class="n" id="total">{{.Total}}</th></tr>
</tbody>
</table>
<h2 style="margin-top:1.4em">Pick how this purchase goes</h2>
<div class="cards">
{{- range .Scenarios}}
<form class="card" method="post" action="/buy" id="scenario-{{.ID}}">
<h2>{{.Title}}</h2>
<p>{{.Story}}</p>
<input type="hidden" name="scenario" value="{{.ID}}">
<div><button type="submit" id="buy-{{.ID}}">Buy</button></div>
</form>
{{- end}}
</div>
{{template "foot"}}{{end}}

{{define "result"}}{{template "head" (dict "Title" .Headline "Refresh" .Refresh)}}
<main id="result" data-progress="{{.Progress}}">
<div class="banner tone-{{.Tone}}">
<h1 id="headline">{{.Headline}}</h1>
{{- if .Scenario}}<p class="muted">Scenario: <strong>{{.Scenario.Title}}</strong>{{if .Outcome}} · back from Klarna's page via the <code>{{.Outcome}}</code> URL{{end}}</p>{{end}}
{{- if eq .Progress "working"}}<p class="muted">hppd is still at work; this page refreshes itself.</p>{{end}}
{{- if and (eq .Progress "shopper") .Session}}
<p>Klarna reports the payment page as <span class="badge {{badge .Session.KlarnaStatus}}">{{.Session.KlarnaStatus}}</span>. The session stays open: you can pay again, or give up.</p>
<div class="actions">
{{- if .Session.RedirectURL}}<a class="button" id="pay-again" href="{{.Session.RedirectURL}}">Pay again</a>{{end}}
<form method="post" action="/cancel"><input type="hidden" name="session" value="{{.Session.ID}}">{{if .Scenario}}<input type="hidden" name="scenario" value="{{.Scenario.ID}}">{{end}}<button class="plain" type="submit" id="cancel">Cancel purchase</button></form>
</div>
{{- end}}
{{- range .Problems}}<p class="problem">{{.}}</p>{{end}}
</div>
<div class="stack">
{{- with .Charge}}
<section class="card" id="charge">
<h2>Charge <span class="badge {{badge .Status}}" id="charge-status">{{.Status}}</span></h2>
<dl>
<dt>id</dt><dd><code>{{.ID}}</code></dd>
<dt>customer token</dt><dd><code>{{.CustomerToken}}</code> (customer present: {{.CustomerPresent}})</dd>
<dt>amount</dt><dd>{{money .OrderAmount .PurchaseCurrency}}</dd>
{{- if .OrderID}}<dt>order id</dt><dd><code id="charge-order">{{.OrderID}}</code>{{if .FraudStatus}} · fraud status {{.FraudStatus}}{{end}}</dd>{{end}}
{{- if .ErrorCode}}<dt>error</dt><dd><code>{{.ErrorCode}}</code>{{range .ErrorMessages}} {{.}}{{end}}</dd>{{end}}
{{- with .Session}}<dt>fallback session</dt><dd><code>{{.ID}}</code> {{if .Status}}<span class="badge {{badge .Status}}">{{.Status}}</span>{{end}}</dd>{{end}}
<dt>reference</dt><dd>{{.MerchantRef1}}</dd>
</dl>
<h3>Attempts at Klarna</h3>
<table id="attempts"><thead><tr><th>at</th><th>result</th><th>HTTP</th><th>error code</th><th>Klarna-Idempotency-Key</th></tr></thead><tbody>
{{- range .Attempts}}
<tr><td>{{clock .At}}</td><td><span class="badge {{badge .Result}}">{{.Result}}</span></td><td>{{if .HTTPStatus}}{{.HTTPStatus}}{{end}}</td><td>{{.ErrorCode}}</td><td><code>{{.IdempotencyKey}}</code></td></tr>
{{- else}}<tr><td colspan="5" class="muted">none yet</td></tr>{{end}}
</tbody></table>
<h3>History</h3>
{{template "history" .History}}
</section>
{{- end}}
{{- with .Session}}
<section class="card" id="session">
<h2>Session <span class="badge {{badge .Status}}" id="session-status">{{.Status}}</span></h2>
<dl>
<dt>id</dt><dd><code>{{.ID}}</code></dd>
<dt>Klarna status</dt><dd>{{if .KlarnaStatus}}<span class="badge {{badge .KlarnaStatus}}" id="klarna-status">{{.KlarnaStatus}}</span>{{else}}—{{end}}</dd>
<dt>integration</dt><dd>{{.Integration}} · place_order_mode {{.PlaceOrderMode}}</dd>
<dt>amount</dt><dd>{{money .OrderAmount .PurchaseCurrency}}</dd>
{{- if .OrderID}}<dt>order id</dt><dd><code id="session-order">{{.OrderID}}</code>{{if .FraudStatus}} · fraud status {{.FraudStatus}}{{end}}</dd>{{end}}
<dt>Klarna ids</dt><dd>KP <code>{{.Klarna.KPSessionID}}</code><br>HPP <code>{{.Klarna.HPPSessionID}}</code></dd>
{{- if .ChargeID}}<dt>charge</dt><dd><code>{{.ChargeID}}</code></dd>{{end}}
{{- with .Error}}<dt>error</dt><dd><code>{{.ErrorCode}}</code>{{range .ErrorMessages}} {{.}}{{end}}</dd>{{end}}
<dt>expires</dt><dd>{{.ExpiresAt.Format "2006-01-02 15:04 MST"}}</dd>
</dl>
<h3>History</h3>
{{template "history" .History}}
</section>
{{- end}}
</div>
{{- if .ChargeJSON}}<details><summary>The charge as JSON (GET /v1/charges/{id})</summary><pre>{{.ChargeJSON}}</pre></details>{{end}}
{{- if .SessionJSON}}<details><summary>The session as JSON (GET /v1/sessions/{id})</summary><pre>{{.SessionJSON}}</pre></details>{{end}}
<p class="muted">Every status above is what hppd reports (GET /v1/sessions/{id}, GET /v1/charges/{id}).</p>
</main>
<p class="actions"><a class="button" href="/" id="back-to-shop">Back to the shop</a></p>
{{template "foot"}}{{end}}

{{define "history"}}
<table class="history"><thead><tr><th>at</th><th>from</th><th>to</th><th>Klarna</th><th>source</th><th>reason</th></tr></thead><tbody>
{{- range .}}
<tr><td>{{clock .At}}</td><td>{{or .From "—"}}</td><td><span class="badge {{badge .To}}">{{.To}}</span></td><td>{{.KlarnaStatus}}</td><td>{{.Source}}</td><td>{{.Reason}}</td></tr>
{{- else}}<tr><td colspan="6" class="muted">no changes yet</td></tr>{{end}}
</tbody></table>
{{end}}

{{define "error"}}{{template "head" (dict "Title" .Title)}}
<div class="banner tone-bad" id="error">
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
</div>
<p><a class="button" href="/">Back to the shop</a></p>
{{template "foot"}}{{end}}
`))
