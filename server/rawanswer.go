package server

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"
)

// A parked poll's answer is written on the connection the poller took
// over, by the handlers' own code through rawResponse.

// writeNow writes as much of b as the connection takes without waiting, and
// returns what is left. Writing this way answers thousands of parked polls
// from one goroutine: an answer nearly always fits in the send buffer.
func writeNow(c net.Conn, b []byte) ([]byte, error) {
	if pc, ok := c.(*prefixConn); ok {
		c = pc.Conn
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return b, nil // TLS: written by Write
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return b, nil
	}
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		for len(b) > 0 {
			n, err := syscall.Write(int(fd), b)
			if n > 0 {
				b = b[n:]
			}
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil && !errors.Is(err, syscall.EAGAIN) {
				werr = err
			}
			if err != nil || n == 0 {
				break
			}
		}
		return true
	})
	if err != nil {
		return b, err
	}
	return b, werr
}

// netConn is the TCP connection under c (under TLS or pipelined bytes).
func netConn(c net.Conn) net.Conn {
	for {
		switch cc := c.(type) {
		case *prefixConn:
			c = cc.Conn
		case *tls.Conn:
			c = cc.NetConn()
		default:
			return c
		}
	}
}

// rawResponse is the http.ResponseWriter of a parked poll's answer: the
// handlers' code sets its headers and writes it, and it builds the HTTP/1.1
// bytes the poller writes on the connection. The headers that differ from
// poll to poll come last, from pollAt to bodyAt in buf, so that polls whose
// answers have the same body share the rest of the bytes.
type rawResponse struct {
	header    http.Header
	keepAlive bool
	status    int
	buf       []byte
	pollAt    int
	bodyAt    int
}

// pollHeaders are the headers of a parked poll's answer that differ from
// poll to poll: its jittered wait, and its transaction id.
var pollHeaders = map[string]bool{"X-Registry-Wait": true, "X-Response-Id": true}

func (rw *rawResponse) Header() http.Header { return rw.header }

func (rw *rawResponse) WriteHeader(status int) {
	if rw.status != 0 {
		return
	}
	rw.status = status
	h := rw.header
	if h.Get("Date") == "" {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	if !rw.keepAlive {
		h.Set("Connection", "close")
	}
	b := bytes.NewBuffer(make([]byte, 0, 512))
	b.WriteString("HTTP/1.1 ")
	b.WriteString(strconv.Itoa(status))
	b.WriteByte(' ')
	b.WriteString(http.StatusText(status))
	b.WriteString("\r\n")
	h.WriteSubset(b, pollHeaders)
	rw.pollAt = b.Len()
	b.Write(appendPollHeaders(nil, h.Get("X-Registry-Wait"), h.Get("X-Response-Id")))
	b.WriteString("\r\n")
	rw.bodyAt = b.Len()
	rw.buf = b.Bytes()
}

// appendPollHeaders appends the pollHeaders, in the order Header.Write
// sorts them; X-Registry-Wait only if set, as only a long-poll has it.
func appendPollHeaders(dst []byte, wait, id string) []byte {
	if wait != "" {
		dst = append(dst, "X-Registry-Wait: "...)
		dst = append(dst, wait...)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "X-Response-Id: "...)
	dst = append(dst, id...)
	return append(dst, "\r\n"...)
}

// answerFor appends to dst the answer rw built, with the given
// X-Registry-Wait and X-Response-Id instead of its own.
func (rw *rawResponse) answerFor(dst []byte, wait, id string) []byte {
	dst = append(dst, rw.buf[:rw.pollAt]...)
	dst = appendPollHeaders(dst, wait, id)
	return append(dst, rw.buf[rw.bodyAt-2:]...) // from the blank line
}

func (rw *rawResponse) Write(p []byte) (int, error) {
	rw.WriteHeader(http.StatusOK)
	rw.buf = append(rw.buf, p...)
	return len(p), nil
}
