package webhook

import (
	"errors"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/hpp"
)

func TestRetryAfterSeconds(t *testing.T) {
	later := func(d time.Duration) error {
		return &hpp.RetryLater{Err: &core.Error{Code: core.CodeUnavailable, Message: "try again"}, After: d}
	}
	cases := []struct {
		name string
		err  error
		want int
	}{
		{"no hint", &core.Error{Code: core.CodeUnavailable}, defaultRetryAfter},
		{"foreign error", errors.New("x"), defaultRetryAfter},
		{"whole seconds", later(3 * time.Second), 3},
		{"rounded up", later(1500 * time.Millisecond), 2},
		{"at least 1", later(0), 1},
		{"at most 60", later(time.Hour), 60},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := retryAfterSeconds(tc.err); got != tc.want {
				t.Fatalf("retryAfterSeconds = %d, want %d", got, tc.want)
			}
		})
	}
}
