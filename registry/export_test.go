package registry

import "time"

// RefreshDue makes c's next call refresh its token, as it does some
// minutes before the token expires.
func RefreshDue(c *Client) {
	c.auth.mu.Lock()
	defer c.auth.mu.Unlock()
	c.auth.refreshAt = time.Now()
}
