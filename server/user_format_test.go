package server_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/server"
)

// A User printed or logged shows its name and tenant, and none of its
// credentials, in any of the forms it can be printed in.
func TestUserHidesCredentials(t *testing.T) {
	t.Parallel()
	u := server.User{Name: "deploy", Tenant: "7777", APIKey: "apikey-s3cret", PasswordHash: "$2a$10$hash-s3cret", Tokens: []string{"token-s3cret-0123456789"}}
	var text, js bytes.Buffer
	slog.New(slog.NewTextHandler(&text, nil)).Info("user", "user", u)
	slog.New(slog.NewJSONHandler(&js, nil)).Info("user", "user", u)
	for _, out := range []string{
		fmt.Sprint(u), fmt.Sprintf("%+v", u), fmt.Sprintf("%#v", u), fmt.Sprintf("%v", &u),
		fmt.Sprintf("%+v", []server.User{u}), text.String(), js.String(),
	} {
		if strings.Contains(out, "s3cret") {
			t.Errorf("%s\nshows a credential", out)
		}
		if !strings.Contains(out, "deploy") || !strings.Contains(out, "7777") {
			t.Errorf("%s\nleaves out the name or the tenant", out)
		}
	}
	if s := fmt.Sprintf("%#v", u); !strings.HasPrefix(s, "server.User{") {
		t.Errorf("%%#v = %s, want it to name server.User", s)
	}
	if u.APIKey != "apikey-s3cret" || u.Tokens[0] != "token-s3cret-0123456789" {
		t.Errorf("formatting changed the User: %+v", []string{u.APIKey, u.Tokens[0]})
	}
}
