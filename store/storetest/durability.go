package storetest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hppd/hppd/store"
)

// The durability test: a Batch that returned survives its process being
// killed (SIGKILL) right after. The writing process is the test binary
// itself, started again with durabilityEnv set; an implementation's TestMain
// calls DurabilityChild first so that the binary plays that role.

const (
	durabilityEnv    = "HPPD_STORETEST_WRITER"
	durabilityTarget = "HPPD_STORETEST_TARGET"
	durabilityAcks   = 300
)

// DurabilityChild runs the writer when this process is the one Durability
// started: it opens the store named target with open and writes, with
// group commit from many goroutines, printing "ack <session> <hpp session>"
// for every Batch that returned, until it is killed; it never returns then.
// In any other process it returns at once.
func DurabilityChild(open func(target string) (store.Store, error)) {
	if os.Getenv(durabilityEnv) == "" {
		return
	}
	db, err := open(os.Getenv(durabilityTarget))
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(4)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var b [10]byte
				_, _ = rand.Read(b[:])
				s := session("ses_"+hex.EncodeToString(b[:]), "shop", time.Now().UTC())
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
	os.Exit(5)
}

// Durability starts the test binary as the writer of the store named
// target, kills it with SIGKILL once it has acknowledged durabilityAcks
// writes, and checks that every acknowledged write is in the store reopen
// opens (on the same target): the session and its callback mark.
func Durability(t *testing.T, target string, reopen func(t *testing.T) store.Store) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), durabilityEnv+"=1", durabilityTarget+"="+target)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type ack struct{ id, hpp string }
	var acks []ack
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && len(acks) < durabilityAcks {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] != "ack" {
			t.Fatalf("writer said %q", sc.Text())
		}
		acks = append(acks, ack{f[1], f[2]})
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if len(acks) < durabilityAcks {
		t.Fatalf("writer acknowledged only %d writes", len(acks))
	}
	db := reopen(t)
	view(t, db, func(tx store.Tx) error {
		for _, a := range acks {
			if _, err := tx.Session(a.id); err != nil {
				t.Errorf("acknowledged session %s: %v", a.id, err)
			}
			if seen, err := tx.SeenEvent(a.hpp, "created"); err != nil || !seen {
				t.Errorf("acknowledged callback mark of %s: %v %v", a.id, seen, err)
			}
		}
		return nil
	})
}
