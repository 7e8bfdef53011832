package boltstore

import (
	"errors"
	"fmt"
	"github.com/hppd/hppd/store"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Group commit.
//
// Batch hands its function to one writer goroutine, which runs every call
// waiting at that moment (up to MaxBatchSize) in a single read-write
// transaction, commits it once (bbolt writes the pages, fdatasyncs, writes
// the meta page, fdatasyncs) and only then answers the callers.
// While a commit runs, new calls queue up and form the next batch, so batches
// grow with the load without a timer: an idle store commits a lone call at
// once, a busy one pays one fsync for hundreds of calls. (bbolt's own
// DB.Batch closes a batch when its timer fires, even while the previous batch
// still waits for its fsync, so under load it pays one fsync per timer tick
// instead.) MaxBatchDelay > 0 adds a wait for more calls before a batch that
// is not full starts, trading latency for fewer commits.
//
// A call whose function fails after writing makes the writer roll the batch
// back, run the others again without it, and then run it alone in its own
// transaction, whose outcome its caller gets: so a function may run twice,
// and its error reaches only its caller. A function that fails without
// having written anything is simply left out of the commit. A panic in a
// function is re-raised in its caller's goroutine.

// errRollback aborts a batch transaction so that it can be run again.
var errRollback = errors.New("store: batch rolled back")

// errNothingWritten ends a batch in which no function wrote without a commit.
var errNothingWritten = errors.New("store: batch wrote nothing")

type call struct {
	fn   func(store.Tx) error
	done chan callResult
}

type callResult struct {
	err      error
	panicked bool
	panicVal any
	stack    []byte
}

// runCall runs fn in tx, turning a panic into a result.
func runCall(fn func(store.Tx) error, tx *Tx) (r callResult) {
	defer func() {
		if p := recover(); p != nil {
			r = callResult{panicked: true, panicVal: p, stack: debug.Stack()}
		}
	}()
	return callResult{err: fn(tx)}
}

// Batch runs fn in a read-write transaction shared with concurrent Batch
// callers (group commit: one fsync for many callers), and returns once that
// transaction is on disk, so what fn wrote survives a crash right after.
//
// fn must be idempotent: it may run twice (see the group commit notes in
// batch.go). fn's error is returned to its caller only. A fn that returns an
// error after writing costs the other calls of its batch a re-run; one that
// fails before writing anything costs nothing, so check first and write
// last, and report expected outcomes (a duplicate event, say) through
// variables fn closes over rather than as errors. fn runs on the store's
// writer goroutine: it must not call Batch, Update or View itself.
func (db *DB) Batch(fn func(store.Tx) error) error {
	c := &call{fn: fn, done: make(chan callResult, 1)}
	db.closeMu.RLock()
	if db.closed {
		db.closeMu.RUnlock()
		return store.ErrClosed
	}
	db.calls <- c
	db.closeMu.RUnlock()
	r := <-c.done
	if r.panicked {
		panic(fmt.Sprintf("%v [recovered in the store's writer]\n%s", r.panicVal, r.stack))
	}
	return r.err
}

// writer is the goroutine that runs batches until Close.
func (db *DB) writer() {
	defer close(db.writerDone)
	var timer *time.Timer
	for {
		var first *call
		select {
		case first = <-db.calls:
		case <-db.quit:
			// Close holds closeMu while it closes quit, so no Batch is
			// sending any more: what is buffered is all that is left.
			for {
				calls := db.collect(nil)
				if len(calls) == 0 {
					return
				}
				db.runBatch(calls)
			}
		}
		calls := db.collect([]*call{first})
		if db.maxDelay > 0 && len(calls) < db.maxBatch {
			if timer == nil {
				timer = time.NewTimer(db.maxDelay)
			} else {
				timer.Reset(db.maxDelay)
			}
		wait:
			for len(calls) < db.maxBatch {
				select {
				case c := <-db.calls:
					calls = append(calls, c)
				case <-timer.C:
					break wait
				case <-db.quit:
					break wait
				}
			}
			timer.Stop()
		}
		db.runBatch(calls)
	}
}

// collect adds the calls waiting now to calls, up to the batch size.
func (db *DB) collect(calls []*call) []*call {
	for len(calls) < db.maxBatch {
		select {
		case c := <-db.calls:
			calls = append(calls, c)
		default:
			return calls
		}
	}
	return calls
}

// runBatch runs calls in one transaction and answers them after the commit.
func (db *DB) runBatch(calls []*call) {
	var solo []*call
	for len(calls) > 0 {
		results := make([]callResult, len(calls))
		failed := -1
		err := db.rw(len(calls), func(btx *bolt.Tx) error {
			wrote := false
			for i, c := range calls {
				tx := newTx(btx, db.cache)
				r := runCall(c.fn, tx)
				if r.panicked || (r.err != nil && tx.wrote) {
					failed = i
					return errRollback
				}
				results[i] = r
				wrote = wrote || tx.wrote
			}
			if !wrote {
				// Nothing to make durable (lease claims that found the
				// work taken, say): no commit, no fsync.
				return errNothingWritten
			}
			return nil
		})
		if errors.Is(err, errNothingWritten) {
			err = nil
		}
		if failed >= 0 {
			solo = append(solo, calls[failed])
			rest := make([]*call, 0, len(calls)-1)
			rest = append(rest, calls[:failed]...)
			calls = append(rest, calls[failed+1:]...)
			continue
		}
		for i, c := range calls {
			if err != nil {
				c.done <- callResult{err: err}
			} else {
				c.done <- results[i]
			}
		}
		break
	}
	for _, c := range solo {
		db.runSolo(c)
	}
}

// runSolo runs one call in a transaction of its own.
func (db *DB) runSolo(c *call) {
	var r callResult
	err := db.rw(1, func(btx *bolt.Tx) error {
		r = runCall(c.fn, newTx(btx, db.cache))
		if r.panicked {
			return errRollback
		}
		return r.err
	})
	if !r.panicked && r.err == nil {
		r.err = err
	}
	c.done <- r
}
