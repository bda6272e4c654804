package registry_test

import (
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/internal/testcert"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
)

// A registry served over HTTPS with a certificate of a private CA: the
// system's roots do not trust it, Config.CACert does, for the registry and
// for its identity endpoint.
func TestCACert(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{TLS: true})
	ctx := testContext(t)
	cfg := registry.Config{URL: srv.APIURL, Username: "tls", APIKey: "dev"}

	c, err := registry.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Authenticate(ctx)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("without CACert: %v, want x509: certificate signed by unknown authority", err)
	}

	// A bundle: another CA first, a key block between; the server's CA
	// trusted.
	dir := t.TempDir()
	server, err := os.ReadFile(srv.CACert)
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "bundle.pem")
	writeTestFile(t, bundle, string(otherCA(t))+"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"+string(server))
	for _, file := range []string{srv.CACert, bundle} {
		cfg.CACert = file
		c, err := registry.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.CreateService(ctx, registry.Service{ID: "web-1", HeartbeatTimeout: 30}); err != nil {
			t.Fatalf("CACert %s: %v", filepath.Base(file), err)
		}
		if _, err := c.GetService(ctx, "web-1"); err != nil {
			t.Fatalf("CACert %s: %v", filepath.Base(file), err)
		}
		if err := c.DeleteService(ctx, "web-1"); err != nil {
			t.Fatal(err)
		}
	}

	// Only another CA: the server's certificate is not trusted.
	other := filepath.Join(dir, "other.pem")
	writeTestFile(t, other, string(otherCA(t)))
	cfg.CACert = other
	c, err = registry.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Authenticate(ctx); !errors.As(err, &unknown) {
		t.Fatalf("CACert of another CA: %v, want x509: certificate signed by unknown authority", err)
	}
}

// A CA file that cannot be used fails New, naming the file.
func TestCACertErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		writeTestFile(t, p, body)
		return p
	}
	badCert := "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"missing", filepath.Join(dir, "missing.pem"), []string{"missing.pem", "no such file"}},
		{"empty", file("empty.pem", ""), []string{"empty.pem", "holds no PEM certificate"}},
		{"key only", file("key.pem", "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"), []string{"key.pem", "holds no PEM certificate"}},
		{"DER", file("ca.der", "\x30\x82\x01\x0a garbage"), []string{"ca.der", "holds no PEM certificate"}},
		{"bad certificate", file("bad.pem", string(otherCA(t))+badCert), []string{"CA certificate 2 in", "bad.pem"}},
		{"a directory", dir, []string{dir}},
	} {
		_, err := registry.New(registry.Config{URL: "https://registry.example/v1.0", Token: "t", Tenant: "1", CACert: tc.file})
		for _, want := range tc.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: New = %v, want an error saying %q", tc.name, err, want)
			}
		}
	}

	// With a client of the caller's, the CAs are its transport's: CACert
	// is refused rather than ignored.
	ca := file("ca.pem", string(otherCA(t)))
	_, err := registry.New(registry.Config{URL: "https://registry.example/v1.0", Token: "t", Tenant: "1", CACert: ca, HTTPClient: &http.Client{}})
	if err == nil || !strings.Contains(err.Error(), "HTTPClient") || !strings.Contains(err.Error(), ca) {
		t.Errorf("CACert with HTTPClient: New = %v, want an error naming both", err)
	}
	if pool, err := registry.LoadCACert(ca); err != nil || pool == nil {
		t.Errorf("LoadCACert = %v, %v", pool, err)
	}
}

// otherCA is a PEM self-signed CA certificate that signed no server's.
func otherCA(t *testing.T) []byte { return testcert.New(t, "another CA", 7).PEM() }

func writeTestFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
