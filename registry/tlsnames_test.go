package registry_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/registry"
)

// A server's certificate names what it pleases, before anything is
// trusted: its names (ASCII, newlines and escapes included) reach the
// error of a host name that does not match. The error is still one line
// of bounded length that drives no terminal, and still an
// x509.HostnameError to errors.As.
func TestErrorShowsCertificateNamesSafely(t *testing.T) {
	t.Parallel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"x\nregistry: all good\x1b]0;owned\a\x1b[2J"}
	for range 3 {
		names = append(names, strings.Repeat("y", 3000)+".example")
	}
	cert := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: names}
	der, err := x509.CreateCertificate(rand.Reader, cert, cert, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the client hangs up on the certificate
	srv.StartTLS()
	defer srv.Close()
	for _, cfg := range []registry.Config{
		{URL: strings.Replace(srv.URL, "127.0.0.1", "localhost", 1) + "/v1.0", Token: "t", Tenant: "1"},
		{URL: strings.Replace(srv.URL, "127.0.0.1", "localhost", 1) + "/v1.0", Username: "u", APIKey: "k"},
	} {
		c, err := registry.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.GetService(context.Background(), "abc")
		c.Close()
		if err == nil {
			t.Fatal("no error")
		}
		if s := err.Error(); strings.ContainsAny(s, "\n\x1b\a") || len(s) > 2048 {
			t.Errorf("error text of %d bytes holds the certificate's names as they are: %.300q", len(s), s)
		}
		var he x509.HostnameError
		if !errors.As(err, &he) {
			t.Errorf("%v: not an x509.HostnameError", err)
		}
	}
}
