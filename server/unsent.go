package server

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMaxUnsentBytes is Config.MaxUnsentBytes's default.
const DefaultMaxUnsentBytes = 512 << 20

// unsentBudget bounds the bytes of list answers (pages of services,
// configuration values or events) built and not yet written to their
// clients: the read turns (readGate) bound how many are built at once,
// but an answer is written after its turn, and a client that does not
// read holds it until the write timeout. One account that sent such reads
// on thousands of connections and never read had the server hold 8 GB.
// An account holds at most an eighth of the whole. An answer of an
// account that holds none is taken whatever its size (no page is too
// large to be read), and past the whole, up to twice it: a few accounts
// whose clients do not read fill the whole, and must not keep every
// other account from reading.
type unsentBudget struct {
	total, perTenant int64
	refused          prometheus.Counter
	held             prometheus.Gauge

	mu       sync.Mutex
	all      int64
	byTenant map[string]int64
}

func newUnsentBudget(total int64, refused prometheus.Counter, held prometheus.Gauge) *unsentBudget {
	if total <= 0 {
		total = DefaultMaxUnsentBytes
	}
	return &unsentBudget{total: total, perTenant: max(total/8, 1), refused: refused, held: held, byTenant: map[string]int64{}}
}

// take counts n bytes of tenant's answer as unsent, and returns the
// function that counts them off once written (or not); or the rate-limit
// fault when the account's or the server's bound would be passed.
func (b *unsentBudget) take(tenant string, n int) (release func(), err error) {
	size := int64(n)
	b.mu.Lock()
	mine := b.byTenant[tenant]
	var over string
	switch {
	case mine > 0 && mine+size > b.perTenant:
		over = fmt.Sprintf("Limit of %d bytes of the account's list answers not yet taken by their clients has been reached", b.perTenant)
	case mine > 0 && b.all+size > b.total:
		over = fmt.Sprintf("Limit of %d bytes of list answers not yet taken by their clients has been reached", b.total)
	case b.all > 0 && b.all+size > 2*b.total:
		over = fmt.Sprintf("Limit of %d bytes of list answers not yet taken by their clients has been reached", 2*b.total)
	}
	if over != "" {
		b.mu.Unlock()
		b.refused.Inc()
		return nil, rateLimited(over, time.Second)
	}
	b.byTenant[tenant] = mine + size
	b.all += size
	b.mu.Unlock()
	b.held.Add(float64(size))
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			if b.byTenant[tenant] -= size; b.byTenant[tenant] == 0 {
				delete(b.byTenant, tenant)
			}
			b.all -= size
			b.mu.Unlock()
			b.held.Sub(float64(size))
		})
	}, nil
}

// writeList writes body, a list answer of rq's account, as its 200
// answer, counting its bytes against the unsent bounds until written;
// past them it writes nothing and returns the rate-limit fault.
func (s *Server) writeList(w http.ResponseWriter, rq *request, body []byte, headers func(http.Header)) error {
	release, err := s.unsent.take(rq.tenant, len(body))
	if err != nil {
		return err
	}
	defer release()
	if headers != nil {
		headers(w.Header())
	}
	writeRawJSON(w, http.StatusOK, body)
	return nil
}
