package webhook

import (
	"html/template"
	"net/http"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"
)

// A shopper's browser that lands on a shopper URL hppd cannot serve (an
// unknown or mangled link, a session that is gone, Klarna unreachable) gets a
// small HTML page instead of the JSON error body every other client gets. The
// page says what the shopper can do, never why in internal terms, and shows
// the request id for the shop's support. It is chosen only for GET and HEAD
// requests outside /v1/ and /klarna/ whose Accept header asks for text/html
// before application/json: storefronts and Klarna always get JSON.

// wantsHTML reports whether c is a browser on a shopper-facing path.
func wantsHTML(c *gin.Context) bool {
	r := c.Request
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	p := r.URL.Path
	if strings.HasPrefix(p, "/v1/") || strings.HasPrefix(p, "/klarna/") {
		return false
	}
	return prefersHTML(r.Header.Get("Accept"))
}

// prefersHTML reports whether an Accept header lists text/html (or
// application/xhtml+xml) with a non-zero quality, ahead of application/json
// when both are there. Browsers send text/html first; API clients send
// application/json, */* or nothing.
func prefersHTML(accept string) bool {
	html, json := -1.0, -1.0
	for _, part := range strings.Split(accept, ",") {
		media, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(p), "q="); ok {
				q = parseQ(v)
			}
		}
		switch strings.ToLower(strings.TrimSpace(media)) {
		case "text/html", "application/xhtml+xml":
			html = max(html, q)
		case "application/json":
			json = max(json, q)
		}
	}
	return html > 0 && html >= json
}

// parseQ reads an Accept quality ("0", "0.8", "1.000"); anything else is 0.
func parseQ(v string) float64 {
	if v == "" || len(v) > 5 {
		return 0
	}
	whole, frac, _ := strings.Cut(v, ".")
	if whole != "0" && whole != "1" {
		return 0
	}
	q, scale := 0.0, 0.1
	for _, ch := range frac {
		if ch < '0' || ch > '9' {
			return 0
		}
		q += float64(ch-'0') * scale
		scale /= 10
	}
	if whole == "1" {
		return 1
	}
	return q
}

// errorPage is the whole HTML answer: no scripts, no external resources.
// It is parsed on first use, not at start: most processes never show it,
// and parsing at init costs every process the parser's pages and heap.
var errorPage = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("error").Parse(errorPageHTML))
})

const errorPageHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{.Title}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;background:#f6f6f4;color:#17120f;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}
main{background:#fff;border-radius:12px;box-shadow:0 1px 4px rgba(0,0,0,.08);padding:2rem 2.5rem;max-width:28rem;margin:1rem}
h1{font-size:1.35rem;margin:0 0 .75rem}
p{line-height:1.5;margin:.5rem 0}
.ref{color:#6b6560;font-size:.85rem;margin-top:1.5rem}
</style>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
<p>{{.Text}}</p>
<p class="ref">Reference: {{.RequestID}}</p>
</main>
</body>
</html>
`

type errorPageData struct {
	Title, Text, RequestID string
}

// htmlError answers a browser with the error page for status.
func htmlError(c *gin.Context, status int) {
	d := errorPageData{RequestID: c.GetString("request_id")}
	switch {
	case status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests || status == http.StatusBadGateway:
		d.Title = "Please try again in a moment"
		d.Text = "We could not reach the payment service just now. Nothing was charged by this page. Reload it in a moment, or go back to the shop."
	case status >= 500:
		d.Title = "Something went wrong"
		d.Text = "We could not finish this step. Nothing was charged by this page. Go back to the shop and try again."
	default:
		d.Title = "This payment link does not work"
		d.Text = "The link is not valid or no longer in use. Go back to the shop and start the payment again."
	}
	h := c.Writer.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	c.Status(status)
	if c.Request.Method == http.MethodHead {
		c.Abort()
		return
	}
	_ = errorPage().Execute(c.Writer, d)
	c.Abort()
}
