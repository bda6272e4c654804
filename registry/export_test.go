package registry

import "time"

// RefreshDue makes c's next call refresh its token, as it does some
// minutes before the token expires.
func RefreshDue(c *Client) {
	c.auth.mu.Lock()
	defer c.auth.mu.Unlock()
	c.auth.refreshAt = time.Now()
}

// SetClock makes c, a client of several URLs, take the time for its
// memory of the nodes' failures from now instead of its own clock.
func SetClock(c *Client, now func() time.Duration) { c.clock = now }
