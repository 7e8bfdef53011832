package boltstore

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/storetest"
)

// The test binary doubles as the second process of the lock and crash
// tests: with HPPD_STORE_CHILD set it runs that role instead of the tests.
const childEnv = "HPPD_STORE_CHILD"

func TestMain(m *testing.M) {
	// The writer of the contract suite's SIGKILL test (TestContractDurability).
	storetest.DurabilityChild(func(path string) (store.Store, error) { return Open(path, Options{}) })
	switch os.Getenv(childEnv) {
	case "":
	case "lock":
		os.Exit(lockChild(os.Getenv("HPPD_STORE_PATH")))
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
