package store

import "time"

// PruneConfig says what a Pruner deletes and how much per run.
type PruneConfig struct {
	// Retention: final sessions and charges last updated longer ago are
	// deleted (0: kept forever).
	Retention time.Duration
	// IdempotencyTTL: idempotency records created longer ago are deleted
	// (0: kept forever).
	IdempotencyTTL time.Duration
	// Events: callback de-duplication marks older than this are deleted
	// (default 72h, Klarna's retry window).
	Events time.Duration
	// PerTx bounds the records one transaction deletes (default 250),
	// ScanPerTx the index entries it examines (default 2000), and Txs the
	// transactions of one Run (default 8).
	PerTx, ScanPerTx, Txs int
}

// PruneResult counts what a run deleted.
type PruneResult struct {
	Sessions, Charges, Tokens, Idempotency, Events int
	// Txs is the number of write transactions the run committed.
	Txs int
}

// Total is the number of records deleted.
func (r PruneResult) Total() int {
	return r.Sessions + r.Charges + r.Tokens + r.Idempotency + r.Events
}

// Add adds o's counts to r.
func (r *PruneResult) Add(o PruneResult) {
	r.Sessions += o.Sessions
	r.Charges += o.Charges
	r.Tokens += o.Tokens
	r.Idempotency += o.Idempotency
	r.Events += o.Events
	r.Txs += o.Txs
}
