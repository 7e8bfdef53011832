// Package admin is hppd's operator interface: the admin API the daemon serves
// on a Unix socket, and the operations behind the admin CLI (`hppd sessions`,
// `hppd charges`, `hppd jobs`, `hppd backup`, `hppd check`, `hppd config`).
//
// # Two ways to the data, one code path
//
// bbolt holds an exclusive lock on the data file for as long as a process has
// it open, so the CLI cannot read the file while `hppd serve` runs. Every
// operation is therefore behind one interface, Backend, with two
// implementations:
//
//   - Local runs the operations directly on a *boltstore.DB. The daemon's admin
//     API uses it on the daemon's own store (NewHandler); the CLI uses it on a
//     file it opened itself when no daemon runs (OpenLocal).
//   - Client speaks the admin API over the daemon's Unix socket.
//
// Open picks one: it dials the socket (HPPD_ADMIN_SOCKET, by default the data
// file's path plus ".sock"); if nothing listens there it opens the data file
// with a short lock timeout. A lock held by someone else then means a daemon
// runs without an admin socket, and Open says so instead of waiting.
//
// The socket is created with mode 0600 inside the data directory (0700), so
// only the daemon's user can reach it; the API has no other authentication.
//
// # The admin API
//
//	GET  /sessions?status=&storefront=&limit=   sessions, newest first (all storefronts unless one is named)
//	GET  /sessions/{id}                         one session with its history
//	GET  /charges?status=&storefront=&limit=    charges, newest first
//	GET  /charges/{id}                          one charge with its attempts and history
//	GET  /jobs                                  every job, earliest due first
//	POST /jobs/{id}/retry                       make one job due now and wake the job runner
//	POST /jobs/retry                            the same for every failing job (LastError set)
//	GET  /backup                                a consistent copy of the data file (streamed)
//	GET  /check                                 the result of boltstore.DB.Check and the record counts
//
// Job ids contain slashes ("place_order/sess_…"); clients escape them as one
// path segment. Errors are api.ErrorBody with the core error code; internal
// failures are logged by the daemon and answered without their text.
//
// A backup is one bbolt read transaction written to the response, so writers
// carry on while it streams. The response ends with the trailers
// X-Hppd-Backup-Bytes and X-Hppd-Backup-Sha256; the client compares them with
// what it received, so a copy cut short or damaged in transit is an error,
// never a silently truncated file. BackupFile writes a new FILE.tmp-<random>
// (O_EXCL|O_NOFOLLOW, mode 0600), fsyncs it and
// only then moves it to FILE (refusing to replace an existing FILE unless
// asked to).
//
// # What is shown
//
// Records are shown as the storefront API's resources (api.FromSession,
// api.FromCharge) plus the few fields only an operator needs (storefront,
// next check, masked customer token). Authorization tokens and callback
// secrets are never shown, customer tokens only masked (api.MaskToken). Job
// request bodies are shown as stored: they hold purchase data, no secret.
//
// # Costs
//
// Listing one storefront walks its index (newest first, stopping at the
// limit). Listing all storefronts decodes every record and keeps the newest
// limit of them; listing jobs and `check` read everything. These are operator
// tools, not request paths.
package admin
