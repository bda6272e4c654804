// Package logging builds the slog logger the commands configure with
// --log-format and --log-level.
package logging

import (
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"unicode/utf8"
)

// New returns a logger writing to w in format ("text" or "json") from
// level ("debug", "info", "warn" or "error") up. Its errors name the flag
// at fault and the values it takes.
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

// MaxErrorLine bounds the message of a line an http.Server writes to its
// ErrorLog (ErrorLog): some quote what a client sent, and need no
// credentials to be written (a TLS handshake error quotes the client's
// protocol list, up to 64 KB of it, four bytes a byte).
const MaxErrorLine = 512

// ErrorLog is an http.Server's ErrorLog: each line it writes is a record
// of h at level warn, its message cut to MaxErrorLine bytes (at a whole
// rune) and then saying how long it was; of a handler's panic, only the
// first line is cut, and the stack kept.
func ErrorLog(h slog.Handler) *log.Logger {
	return log.New(cutLines{slog.NewLogLogger(h, slog.LevelWarn).Writer()}, "", 0)
}

// cutLines cuts each line written to it to MaxErrorLine bytes.
type cutLines struct{ w io.Writer }

func (c cutLines) Write(p []byte) (int, error) {
	line := strings.TrimSuffix(string(p), "\n")
	stack := ""
	if strings.HasPrefix(line, "http: panic serving ") {
		// A handler's panic: its stack (at most 64 KiB, the server's own)
		// says where the server failed; only the first line is cut.
		if i := strings.IndexByte(line, '\n'); i >= 0 {
			line, stack = line[:i], line[i:]
		}
	}
	if len(line) <= MaxErrorLine {
		return c.w.Write(p)
	}
	cut := MaxErrorLine
	for cut > 0 && !utf8.RuneStart(line[cut]) {
		cut--
	}
	if _, err := fmt.Fprintf(c.w, "%s… (cut: %d bytes)%s\n", line[:cut], len(line), stack); err != nil {
		return 0, err
	}
	return len(p), nil
}
