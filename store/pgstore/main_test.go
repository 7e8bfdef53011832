package pgstore_test

import (
	"context"
	"testing"

	"github.com/hppd/hppd/internal/pgtest"
	"github.com/hppd/hppd/store/pgstore"
)

func TestMain(m *testing.M) {
	contractChild()
	pgtest.Main(m)
}

func open(t testing.TB, url string) *pgstore.DB {
	t.Helper()
	db, err := pgstore.Open(context.Background(), url, pgstore.Options{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
