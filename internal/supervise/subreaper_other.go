//go:build unix && !linux

package supervise

import "log/slog"

// becomeSubreaper does nothing: only Linux has child subreapers; as PID 1
// the program still reaps the orphans init gets.
func becomeSubreaper(log *slog.Logger) {}
