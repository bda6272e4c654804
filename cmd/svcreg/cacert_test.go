package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/internal/testserver"
)

// A registry served over HTTPS with a private CA's certificate: the API
// commands trust it with --ca-cert or SVCREG_CA_CERT, svcreg template with
// [registry] ca_cert (relative to the config file); without, they say
// where to give it.
func TestCACert(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{TLS: true})
	clearRegistryEnv(t)
	t.Setenv("SVCREG_URL", srv.APIURL)
	t.Setenv("SVCREG_USERNAME", "cacert")
	t.Setenv("SVCREG_API_KEY", "dev")
	svcreg := func(args ...string) (int, string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), args, nil, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}

	code, _, stderr := svcreg("services", "create", "web1", "--timeout", "60")
	if code != exitError || !strings.Contains(stderr, "certificate signed by unknown authority") || !strings.Contains(stderr, "--ca-cert") {
		t.Fatalf("without the CA: exit %d, stderr %q; want the x509 error and a hint at --ca-cert", code, stderr)
	}
	if code, _, stderr := svcreg("services", "create", "web1", "--timeout", "60", "--ca-cert", srv.CACert); code != exitOK {
		t.Fatalf("--ca-cert: exit %d: %s", code, stderr)
	}
	t.Setenv("SVCREG_CA_CERT", srv.CACert)
	if code, stdout, stderr := svcreg("services", "list"); code != exitOK || !strings.Contains(stdout, "web1 ") {
		t.Fatalf("SVCREG_CA_CERT: exit %d, stdout %q: %s", code, stdout, stderr)
	}
	missing := filepath.Join(t.TempDir(), "missing-ca.pem")
	if code, _, stderr := svcreg("limits", "--ca-cert", missing); code != exitUsage || !strings.Contains(stderr, missing) {
		t.Fatalf("--ca-cert of a missing file: exit %d, stderr %q; want a usage error naming it", code, stderr)
	}

	// svcreg template: [registry] ca_cert, relative to the config file.
	t.Setenv("SVCREG_CA_CERT", "")
	dir := t.TempDir()
	ca, err := os.ReadFile(srv.CACert)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "registry-ca.pem"), string(ca))
	writeFile(t, filepath.Join(dir, "ids.tmpl"), "{{ range services }}{{ .ID }}\n{{ end }}")
	config := filepath.Join(dir, "template.toml")
	writeFile(t, config, "[registry]\nca_cert = \"registry-ca.pem\"\n\n[[template]]\nsource = \"ids.tmpl\"\ndestination = \"ids.out\"\n")
	if code, _, stderr := svcreg("template", "--once", "--config", config); code != exitOK {
		t.Fatalf("template with [registry] ca_cert: exit %d: %s", code, stderr)
	}
	if got := readString(filepath.Join(dir, "ids.out")); got != "web1\n" {
		t.Fatalf("rendered %q, want web1", got)
	}
	if cfg, err := loadTemplateConfig(config); err != nil || cfg.Registry.CACert != filepath.Join(dir, "registry-ca.pem") {
		t.Errorf("[registry] ca_cert = %q, %v; want it relative to the config file", cfg.Registry.CACert, err)
	}
}
