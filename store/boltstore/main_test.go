package boltstore

import (
	"errors"
	"fmt"
	"github.com/hppd/hppd/store"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"
)

// The test binary doubles as the second process of the lock and crash
// tests: with HPPD_STORE_CHILD set it runs that role instead of the tests.
const childEnv = "HPPD_STORE_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
	case "lock":
		os.Exit(lockChild(os.Getenv("HPPD_STORE_PATH")))
	case "writer":
		os.Exit(writerChild(os.Getenv("HPPD_STORE_PATH")))
	default:
		fmt.Fprintln(os.Stderr, "unknown", childEnv)
		os.Exit(2)
	}
	code := m.Run()
	cleanupBenchFiles()
	os.Exit(code)
}

// lockChild opens a file another process holds: exit 3 and the error on
// stdout for *LockedError, 4 for another error, 0 if it got the file.
func lockChild(path string) int {
	db, err := Open(path, Options{LockTimeout: 200 * time.Millisecond})
	var le *LockedError
	switch {
	case errors.As(err, &le):
		fmt.Println(err)
		return 3
	case err != nil:
		fmt.Println("other error:", err)
		return 4
	}
	_ = db.Close()
	return 0
}

// writerChild writes sessions with Batch from many goroutines (with fsync,
// as hppd runs) and prints "ack <id>" for each Batch that returned, until it
// is killed.
func writerChild(path string) int {
	db, err := Open(path, Options{})
	if err != nil {
		fmt.Println("open:", err)
		return 4
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for {
				s := realisticSession(r, "shop", time.Now().UTC())
				err := db.Batch(func(tx store.Tx) error {
					if err := tx.MarkEvent(s.HPPSessionID, "created", time.Now()); err != nil {
						return err
					}
					return tx.PutSession(s)
				})
				mu.Lock()
				if err != nil {
					fmt.Println("error:", err)
				} else {
					fmt.Println("ack", s.ID, s.HPPSessionID)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	return 5
}
