package render

import (
	"strings"
	"testing"
)

// SelfEmbedding embeds itself, as the decoder allows.
type SelfEmbedding struct {
	*SelfEmbedding
	Name string `toml:"name"`
}

// The hint for an unknown key walks a schema that embeds itself once, as
// the decoder does, instead of without end.
func TestReadConfigIntoSelfEmbeddingSchema(t *testing.T) {
	t.Parallel()
	path := writeFile(t, t.TempDir(), "render.toml", "nmae = 'x'\n")
	var file struct {
		Config
		SelfEmbedding
	}
	err := ReadConfigInto(path, &file, &file.Config)
	if err == nil || !strings.Contains(err.Error(), "nmae (did you mean name?)") {
		t.Fatalf("ReadConfigInto = %v; want nmae with a hint at name", err)
	}
}
