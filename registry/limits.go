package registry

import "context"

// Limits returns the account's resource and rate limits (spec §7.1, §6.6).
func (c *Client) Limits(ctx context.Context) (Limits, error) {
	var l Limits
	_, err := c.do(ctx, call{method: "GET", path: "/limits", max: itemAnswer}, &l)
	return l, err
}
