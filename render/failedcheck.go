package render

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"

	"github.com/svcreg/svcreg/internal/retry"
)

// failedChecks remembers, per group, the output whose check failed last,
// and when to check that same output again. A change a group's templates
// do not read (a configuration value, another group's services) renders
// the same bytes: without it each such change, up to the registry's write
// rate, ran the check again and logged its failure and output again.
// A different output is checked at once; the same one after a backoff (1 s
// doubling to 1 min, as the loop retries a failed pass), since what the
// check reads besides the output (an included file, a host name's address)
// may have been fixed meanwhile. A new template set (a reload) starts
// afresh: its groups are new.
type failedChecks struct {
	mu sync.Mutex
	m  map[string]*failedCheck // by group name
}

type failedCheck struct {
	g     *Group
	sum   [sha256.Size]byte
	f     *Failure
	next  time.Time // when the same output is checked again
	retry retry.Backoff
}

// outputSum identifies what a check of files reads: every template's
// destination and rendered bytes.
func outputSum(files []*file) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	for _, f := range files {
		for _, b := range [][]byte{[]byte(f.t.Destination), f.out} {
			binary.BigEndian.PutUint64(n[:], uint64(len(b)))
			h.Write(n[:])
			h.Write(b)
		}
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// unchanged returns the failure of g's last check and when to check
// again, if that check was of the output files hold and its backoff has
// not passed. The output is hashed only when g has a failed check.
func (c *failedChecks) unchanged(g *Group, files []*file, now time.Time) (*Failure, time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fc := c.m[g.Name]
	if fc == nil || fc.g != g || !now.Before(fc.next) || fc.sum != outputSum(files) {
		return nil, time.Time{}, false
	}
	return fc.f, fc.next, true
}

// checked records the outcome of g's check of the output files hold: a
// failure of the check step is remembered, with a longer wait if it is
// the same output's again; anything else forgets g's.
func (c *failedChecks) checked(g *Group, files []*file, f *Failure, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f == nil || f.Step != StepCheck {
		delete(c.m, g.Name)
		return
	}
	sum := outputSum(files)
	fc := c.m[g.Name]
	if fc == nil || fc.g != g || fc.sum != sum {
		fc = &failedCheck{g: g, sum: sum, retry: retry.Backoff{Min: time.Second, Max: time.Minute}}
		if c.m == nil {
			c.m = map[string]*failedCheck{}
		}
		c.m[g.Name] = fc
	}
	fc.f, fc.next = f, now.Add(fc.retry.Next())
}
