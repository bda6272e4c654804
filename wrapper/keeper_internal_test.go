package wrapper

import "testing"

// Wrappers refused together (a key revoked under a host's services) do not
// retry in step: the slow retry's wait is jittered, within a fifth below
// permanentRetry.
func TestPermanentWaitIsJittered(t *testing.T) {
	seen := map[int64]bool{}
	for range 50 {
		d := permanentWait()
		if d > permanentRetry || d < permanentRetry*4/5 {
			t.Fatalf("wait %v, want within [%v, %v]", d, permanentRetry*4/5, permanentRetry)
		}
		seen[int64(d)] = true
	}
	if len(seen) < 2 {
		t.Errorf("50 waits were all %v", permanentWait())
	}
}
