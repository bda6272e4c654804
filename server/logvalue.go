package server

import "strconv"

// maxLogValue bounds a value from a request or from registry data in a log
// line, so that no client can write long lines into the server's log.
const maxLogValue = 256

// logValue is s, cut to maxLogValue bytes with a note of its full length.
func logValue(s string) string {
	if len(s) <= maxLogValue {
		return s
	}
	return s[:maxLogValue] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}
