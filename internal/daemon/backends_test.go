package daemon_test

import (
	"sync"
	"testing"

	"github.com/hppd/hppd/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The end-to-end tests that matter for money run on both stores: bbolt (as
// every test does) and PostgreSQL, through the same harness with
// HPPD_DATABASE_URL set. A test here is an ordinary test function run again
// as the subtest "postgres".
var moneyTests = map[string]func(*testing.T){
	"PayModeNonePlacesOneOrder":          TestPayModeNonePlacesOneOrderWithTheSessionLines,
	"EverythingAtOnceStillOneOrder":      TestEverythingAtOnceStillOneOrder,
	"LostCallbacksPollerPlaces":          TestLostCallbacksThePollerStillPlacesTheOrder,
	"RestartInTheMiddleLosesNothing":     TestRestartInTheMiddleLosesNothing,
	"SDKIntegrationPlacesOrderOnce":      TestSDKIntegrationPlacesOrderOnce,
	"ChargeOK":                           TestChargeOK,
	"ChargeIdempotencyKey":               TestChargeIdempotencyKey,
	"ChargeTransientResendsSameKey":      TestChargeTransientFailuresResendSameKeyNeverTwice,
	"RetryAfterCrashFindsFirstAttempt":   TestRetryAfterCrashFindsTheFirstAttempt,
	"IdempotencyComparesJSONValues":      TestIdempotencyComparesJSONValuesNotBytes,
	"ForgedCallbacksChangeNothing":       TestForgedCallbacksChangeNothing,
	"ChargeFailedOncePresentRetriesAnew": TestChargeFailedOncePresentRetriesWithNewKey,
	"FallbackKilledBeforeLastCommit":     TestFallbackInterruptedBeforeItsLastCommitIsFinishedByTheRetry,
	"FallbackKilledBeforeAnswerRecorded": TestFallbackInterruptedBeforeTheAnswerWasRecordedIsResumed,
}

func TestMoneyOnPostgreSQL(t *testing.T) {
	t.Parallel()
	for name, fn := range moneyTests {
		t.Run(name, func(t *testing.T) {
			withVars(t, map[string]string{"HPPD_DATABASE_URL": pgtest.DB(t)})
			fn(t)
		})
	}
}

// backendVars are variables newEnvWith adds for one test (the store the
// test runs on); keyed by the test, so tests may run in parallel.
var backendVars sync.Map // *testing.T → map[string]string

func withVars(t *testing.T, vars map[string]string) {
	backendVars.Store(t, vars)
	t.Cleanup(func() { backendVars.Delete(t) })
}

func varsOf(t *testing.T) map[string]string {
	if v, ok := backendVars.Load(t); ok {
		return v.(map[string]string)
	}
	return nil
}
