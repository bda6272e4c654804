package server_test

import "testing"

// A long-poll whose token is revoked while it waits is not answered with
// the account's events of after the revocation: it gets the 401 any
// request with the token gets. Before, a poll parked with a stolen token
// just before its revocation went on to get the events of the next ten
// minutes (the longest wait), each poll once.
func TestLongPollOfARevokedToken(t *testing.T) { onEachStore(t, testLongPollOfARevokedToken) }

func testLongPollOfARevokedToken(t *testing.T, kind string) {
	t.Parallel()
	for _, s := range pollModes(t, kind) {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			stolen := s.login(t, t.Name())
			owner := s.login(t, t.Name()) // the same user and account, another token
			ch := stolen.longPoll("?wait=30")
			stillWaiting(t, ch)
			sendRequest(t, owner.base, "DELETE", "/v2.0/tokens/"+stolen.token, nil, "X-Auth-Token", owner.token).want(204)
			stolen.do("GET", "/services", nil).want(401)
			owner.setConfig("after-revocation", "secret")
			p := <-ch
			if p.err != nil {
				t.Fatalf("long-poll: %v", p.err)
			}
			if p.r.code != 401 {
				t.Errorf("long-poll of a revoked token answered %d, want 401: %s", p.r.code, p.r.body)
			}
		})
	}
}
