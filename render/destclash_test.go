package render

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A destination that another template's backup = true writes to
// (DEST.bak) is refused: each install of that template would write its
// old file over the other template's, which no check of the other's saw,
// and no reload of the other's group takes.
func TestConfigRefusesADestinationThatIsABackup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := filepath.Join(dir, "a.conf")
	tcs := []TemplateConfig{
		{Contents: "b\n", Destination: dir + "/./a.conf.bak"},
		{Contents: "a {{len services}}\n", Destination: a, Backup: true},
	}
	c := Config{Templates: tcs}
	if err := c.Normalize(); err == nil || !strings.Contains(err.Error(), "a.conf.bak") {
		t.Errorf("err = %v; want it refused naming a.conf.bak", err)
	}
}

// A destination that is a template's source is refused: the render,
// registry data in it, would be the template the next render runs.
func TestConfigRefusesADestinationThatIsASource(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := writeFile(t, dir, "a.tmpl", "{{range services}}{{.ID}}{{end}}\n")
	for _, self := range []bool{false, true} {
		tcs := []TemplateConfig{{Source: src, Destination: filepath.Join(dir, "a.conf")}}
		if self {
			tcs[0].Destination = dir + "/./a.tmpl"
		} else {
			tcs = append(tcs, TemplateConfig{Contents: "b\n", Destination: dir + "/./a.tmpl"})
		}
		c := Config{Templates: tcs}
		if err := c.Normalize(); err == nil || !strings.Contains(err.Error(), "a.tmpl") {
			t.Errorf("self %t: err = %v; want the destination refused as a template's source", self, err)
		}
	}
}

// A destination that is the config file is refused: the render, registry
// data in it, would be the config the next re-read runs.
func TestConfigRefusesTheConfigFileAsADestination(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, dest := range []string{"svcreg.toml", "./svcreg.toml", filepath.Join(dir, "svcreg.toml")} {
		path := writeFile(t, dir, "svcreg.toml", "[[template]]\ncontents = \"x\"\ndestination = \""+dest+"\"\n")
		if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "config file") {
			t.Errorf("destination %s: err = %v; want it refused as the config file", dest, err)
		}
	}
}

// Two destinations that are one file, under a directory and a symbolic
// link to it, are refused, as two of one spelling are: the two templates
// would write the file in turn at every pass.
func TestConfigRefusesOneFileUnderTwoDirectories(t *testing.T) {
	t.Parallel()
	dir, real := linkedDir(t, "conf.d", "sites")
	c := Config{Templates: []TemplateConfig{
		{Contents: "a\n", Destination: filepath.Join(real, "x.conf")},
		{Contents: "b\n", Destination: filepath.Join(dir, "sites", "x.conf")},
	}}
	if err := c.Normalize(); err == nil || !strings.Contains(err.Error(), "through a symbolic link") {
		t.Errorf("err = %v; want the second destination refused as the first's file", err)
	}
	// A destination that is itself a link is a file of its own: an
	// install replaces the link.
	if err := os.Symlink(filepath.Join(real, "x.conf"), filepath.Join(real, "y.conf")); err != nil {
		t.Fatal(err)
	}
	c = Config{Templates: []TemplateConfig{
		{Contents: "a\n", Destination: filepath.Join(real, "x.conf")},
		{Contents: "b\n", Destination: filepath.Join(real, "y.conf")},
	}}
	if err := c.Normalize(); err != nil {
		t.Errorf("two destinations, one a link to the other: %v; want them taken", err)
	}
}

// A destination that is a template's source under a symbolic link to its
// directory is refused too, as the same file under two directories is.
func TestConfigRefusesADestinationThatIsASourceThroughALink(t *testing.T) {
	t.Parallel()
	dir, real := linkedDir(t, "real", "link")
	src := writeFile(t, real, "a.tmpl", "{{range services}}{{.ID}}{{end}}\n")
	c := Config{Templates: []TemplateConfig{{Source: src, Destination: filepath.Join(dir, "link", "a.tmpl")}}}
	if err := c.Normalize(); err == nil || !strings.Contains(err.Error(), "a.tmpl") {
		t.Errorf("err = %v; want the destination refused as the template's source", err)
	}
}

// linkedDir makes, in a new temporary directory dir, a directory name and
// a symbolic link to it, link; it returns dir and the directory's path.
func linkedDir(t *testing.T, name, link string) (dir, real string) {
	t.Helper()
	dir = t.TempDir()
	real = filepath.Join(dir, name)
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(dir, link)); err != nil {
		t.Fatal(err)
	}
	return dir, real
}
