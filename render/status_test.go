package render

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/registry"
)

func TestStatusRecordsRendersInstallsReloadsAndDiff(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	g.r.Status = NewStatus()
	set := g.set(t, TemplateConfig{Reload: "echo reload >> " + g.log})
	ctx := context.Background()
	snap := snapshot(svc("a", []string{"www"}, map[string]string{"ip": "10.0.0.1"}))

	g.r.Pass(ctx, set, snap)
	g.r.Pass(ctx, set, snap) // rendered, unchanged: no install
	changed := time.Now().Add(-time.Second)
	snap2, _, err := snap.Apply([]registry.Event{joinEvent(t, svc("b", []string{"www"}, map[string]string{"ip": "10.0.0.2"}))}, changed)
	if err != nil {
		t.Fatal(err)
	}
	if res := g.r.Pass(ctx, set, snap2); res.Installed != 1 {
		t.Fatalf("changed pass: %+v", res)
	}

	rep := g.r.Status.Report()
	if len(rep.Renders) != 3 || len(rep.Installs) != 2 || rep.Services != 2 || rep.ConfigValues != 4 {
		t.Fatalf("renders %d, installs %d, services %d, values %d; want 3, 2, 2, 4", len(rep.Renders), len(rep.Installs), rep.Services, rep.ConfigValues)
	}
	if rep.Installs[1].Latency < time.Second {
		t.Fatalf("latency %v of an install reflecting a change a second old", rep.Installs[1].Latency)
	}
	if len(rep.Groups) != 1 {
		t.Fatalf("groups: %+v", rep.Groups)
	}
	gs := rep.Groups[0]
	if gs.Reloads != 2 || len(gs.Templates) != 1 || gs.Templates[0].Bytes != len("server 10.0.0.1;\nserver 10.0.0.2;\n") ||
		gs.Templates[0].InstalledAt.IsZero() || gs.Templates[0].Destination != g.dest {
		t.Fatalf("group status: %+v", gs)
	}
	wantDiff := "--- " + g.dest + "\n+++ " + g.dest + "\n@@ -1,1 +1,2 @@\n server 10.0.0.1;\n+server 10.0.0.2;\n"
	if gs.Diff != wantDiff {
		t.Fatalf("diff:\n%s\nwant:\n%s", gs.Diff, wantDiff)
	}

	// An hour later, the counts have gone; the last diff stays.
	g.r.Status.now = func() time.Time { return time.Now().Add(StatusWindow + time.Minute) }
	rep = g.r.Status.Report()
	if len(rep.Renders) != 0 || len(rep.Installs) != 0 || rep.Groups[0].Reloads != 0 || rep.Groups[0].Diff != wantDiff {
		t.Fatalf("an hour later: %+v", rep)
	}
}

func TestStatusCutsALargeDiff(t *testing.T) {
	t.Parallel()
	g := newGroup(t, `{{ range services }}{{ .Metadata.blob }}{{ end }}`)
	g.r.Status = NewStatus()
	set := g.set(t, TemplateConfig{})
	blob := strings.Repeat("é", 50000) // 100 KB of two-byte runes
	if res := g.r.Pass(context.Background(), set, snapshot(svc("a", nil, map[string]string{"blob": blob}))); res.Installed != 1 {
		t.Fatalf("pass: %+v", res)
	}
	d := g.r.Status.Report().Groups[0].Diff
	if len(d) > maxStatusDiff+100 || !strings.HasSuffix(d, "[diff cut at 64 KiB]\n") || !strings.Contains(d, "é") {
		t.Fatalf("diff of %d bytes, ending %q", len(d), d[len(d)-40:])
	}
}

func TestStatusSummarisesATooLargeChange(t *testing.T) {
	t.Parallel()
	many := strings.Repeat("line\n", statusDiffEdits+1)
	for _, c := range []struct{ a, b, want string }{
		{"", many, fmt.Sprintf("@@ 0 lines, 0 bytes -> %d lines, %d bytes @@ (too large a change to show)\n", statusDiffEdits+1, len(many))},
		{"x\n", strings.Repeat("y", statusDiffBytes), fmt.Sprintf("@@ 1 lines, 2 bytes -> 0 lines, %d bytes @@ (too large a change to show)\n", statusDiffBytes)},
		{"a\nb\n", "a\nc\n", "@@ -1,2 +1,2 @@\n a\n-b\n+c\n"},
	} {
		if got := statusDiff([]byte(c.a), []byte(c.b)); got != c.want {
			t.Errorf("statusDiff(%.20q, %.20q) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
}

func TestNilStatusRecordsNothing(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	set := g.set(t, TemplateConfig{})
	if res := g.r.Pass(context.Background(), set, snapshot(svc("a", []string{"www"}, map[string]string{"ip": "10.0.0.1"}))); res.Installed != 1 {
		t.Fatalf("pass without a Status: %+v", res)
	}
}

// The diff of a file that was not for every user to read is not shown,
// also when the change makes it readable (perms = "0600" taken out of the
// config): its old lines may be a secret.
func TestStatusHidesTheDiffOfAFileThatWasPrivate(t *testing.T) {
	t.Parallel()
	g := newGroup(t, "secret {{ len services }}\n")
	g.r.Status = NewStatus()
	ctx := context.Background()
	if res := g.r.Pass(ctx, g.set(t, TemplateConfig{Perms: "0600"}), snapshot()); res.Failures != nil {
		t.Fatalf("first pass: %+v", res)
	}
	if d := g.r.Status.Report().Groups[0].Diff; strings.Contains(d, "secret") {
		t.Fatalf("the diff of a 0600 file shows its lines:\n%s", d)
	}
	if res := g.r.Pass(ctx, g.set(t, TemplateConfig{Perms: "0644"}), snapshot(svc("a", []string{"www"}, map[string]string{"ip": "10.0.0.1"}))); res.Failures != nil || res.Installed != 1 {
		t.Fatalf("the pass making the file readable: %+v", res)
	}
	if d := g.r.Status.Report().Groups[0].Diff; strings.Contains(d, "secret 0") || !strings.Contains(d, "mode 0600: not shown") {
		t.Errorf("the diff of a file that was 0600 shows its old lines:\n%s", d)
	}
}

// A file that every user could read by its mode but that sits in a
// directory not every user may enter (/etc/ssl/private, mode 0700) is not
// for every user to read either: the status page shows no diff of it.
func TestStatusHidesTheDiffOfAFileInAPrivateDirectory(t *testing.T) {
	t.Parallel()
	g := newGroup(t, "secret {{ len services }}\n")
	private := filepath.Join(g.dir, "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	g.dest = filepath.Join(private, "out.conf")
	g.r.Status = NewStatus()
	if res := g.r.Pass(context.Background(), g.set(t, TemplateConfig{Perms: "0644"}), snapshot()); res.Failures != nil || res.Installed != 1 {
		t.Fatalf("pass: %+v", res)
	}
	if d := g.r.Status.Report().Groups[0].Diff; strings.Contains(d, "secret") {
		t.Errorf("the diff of a file in a 0700 directory shows its lines:\n%s", d)
	}
}
