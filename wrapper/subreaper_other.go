//go:build unix && !linux

package wrapper

import "log/slog"

// becomeSubreaper does nothing: only Linux has child subreapers; as PID 1
// the wrapper still reaps the orphans init gets.
func becomeSubreaper(log *slog.Logger) {}
