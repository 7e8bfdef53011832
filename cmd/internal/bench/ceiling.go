package bench

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
)

// CeilingHandler is the no-storage reference of benchmark 1: a plain net/http
// JSON endpoint that reads the request body and answers the same JSON hppd
// answers a callback with, and does nothing else (no routing framework, no
// decoding, no storage). Its rate on the same machine, under the same load,
// is the ceiling hppd's durable rate is compared with.
func CeilingHandler() http.Handler {
	type answer struct {
		Status    string `json:"status"`
		Duplicate bool   `json:"duplicate"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 64<<10)); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_ = json.NewEncoder(w).Encode(answer{Status: "accepted"})
	})
}

// ServeCeiling serves CeilingHandler on addr until ctx is done; ready is
// called with the listening address. It runs in a process of its own
// (hppd-bench ceiling), so that it competes for the CPU exactly as hppd does.
func ServeCeiling(ctx context.Context, addr string, ready func(addr string)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return serveUntil(ctx, ln, CeilingHandler(), ready)
}
