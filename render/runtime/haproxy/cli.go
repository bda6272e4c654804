package haproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/svcreg/svcreg/render/runtime"
)

// cli sends commands to HAProxy's runtime API: a stats socket at level
// admin, or the master CLI, which forwards each command to the current
// worker ("@1"). It keeps one connection in prompt mode, so that a change
// costs round trips, not connections; an exchange that fails closes it,
// and the next one connects again.
type cli struct {
	network, address string
	master           bool
	timeout          time.Duration

	mu    sync.Mutex // one exchange at a time on conn
	conn  net.Conn   // nil: not connected
	buf   []byte     // read from conn, not yet returned
	stale atomic.Bool
	// exchanges counts the lines of commands sent: the round trips.
	exchanges atomic.Int64
}

// newCLI parses a runtime_socket setting: "/path", "unix:/path",
// "tcp:host:port" or "host:port", each optionally prefixed by "master:".
func newCLI(socket string, timeout time.Duration) (*cli, error) {
	c := &cli{network: "unix", timeout: timeout}
	rest, master := strings.CutPrefix(socket, "master:")
	c.master = master
	switch {
	case rest == "":
		return nil, errors.New("runtime_socket is empty; give the path of HAProxy's stats socket (level admin) or master:PATH for its master CLI")
	case strings.HasPrefix(rest, "unix:"):
		c.address = strings.TrimPrefix(rest, "unix:")
	case strings.HasPrefix(rest, "tcp:"):
		c.network, c.address = "tcp", strings.TrimPrefix(rest, "tcp:")
	case strings.HasPrefix(rest, "/") || strings.HasPrefix(rest, "."):
		c.address = rest
	default:
		if _, _, err := net.SplitHostPort(rest); err != nil {
			return nil, fmt.Errorf("runtime_socket %q is neither a socket path nor host:port", socket)
		}
		c.network, c.address = "tcp", rest
	}
	if c.address == "" {
		return nil, fmt.Errorf("runtime_socket %q has no address", socket)
	}
	return c, nil
}

func (c *cli) String() string {
	s := c.address
	if c.master {
		s = "master CLI " + s
	}
	return s
}

// maxAnswer bounds what one command may answer (a "show servers state" of
// a few thousand servers is well under it).
const maxAnswer = 16 << 20

// maxLine bounds a line of commands sent at once: HAProxy's CLI reads a
// line into one buffer (tune.bufsize, 16 kB by default).
const maxLine = 4 << 10

// run sends one command and returns the answer.
func (c *cli) run(ctx context.Context, command string) (string, error) {
	out, err := c.runAll(ctx, []string{command})
	if err != nil {
		return "", err
	}
	return out[0], nil
}

// runAll sends commands, several to a line (separated by ';'), and returns
// their answers. In prompt mode, HAProxy ends every command's answer with
// its prompt, which is how the answers of a line are told apart.
func (c *cli) runAll(ctx context.Context, commands []string) ([]string, error) {
	for _, cmd := range commands {
		if strings.ContainsAny(cmd, "\n;\\") {
			return nil, fmt.Errorf("command %q holds a newline, ';' or '\\'", cmd)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stale.Swap(false) {
		c.close()
	}
	var out []string
	for len(commands) > 0 {
		n, size := 0, 0
		for n < len(commands) && (n == 0 || size+len(commands[n])+5 <= maxLine) {
			size += len(commands[n]) + 5
			n++
		}
		answers, err := c.exchange(ctx, commands[:n])
		if err != nil {
			return nil, err
		}
		out = append(out, answers...)
		commands = commands[n:]
	}
	return out, nil
}

// fresh makes the next exchange connect again, and so talk to the
// process that answers the socket then: a connection to a stats socket
// stays with the process that accepted it, even after a reload replaced
// it; the master CLI's "@1" always reaches the current worker. It does
// not wait for an exchange under way.
func (c *cli) fresh() {
	if !c.master {
		c.stale.Store(true)
	}
}

// runOnce sends one command on a connection of its own.
func (c *cli) runOnce(ctx context.Context, command string) (string, error) {
	own := &cli{network: c.network, address: c.address, master: c.master, timeout: c.timeout}
	defer own.close()
	return own.run(ctx, command)
}

// close closes the connection; c.mu is held.
func (c *cli) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.buf = nil, nil
	}
}

// exchange sends one line of commands and reads their answers; c.mu is
// held. A connection kept from before that HAProxy closed meanwhile (its
// CLI timeout) is replaced once: it answered nothing, so it ran nothing.
func (c *cli) exchange(ctx context.Context, commands []string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	c.exchanges.Add(1)
	kept := c.conn != nil
	answers, got, err := c.try(ctx, commands)
	if err != nil && kept && !got && ctx.Err() == nil {
		answers, _, err = c.try(ctx, commands)
	}
	return answers, err
}

// try is one attempt of exchange; got says whether any answer came.
func (c *cli) try(ctx context.Context, commands []string) (_ []string, got bool, err error) {
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	// A new connection is switched to prompt mode in the same round
	// trip: "prompt" goes first, and its answer (an empty one) is read
	// first.
	prompt := ""
	if c.conn == nil {
		if err := c.connect(ctx); err != nil {
			return nil, false, err
		}
		prompt = "prompt\n"
	}
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(dl)
	}
	conn := c.conn
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	line := strings.Join(commands, ";")
	if c.master {
		line = "@1 " + strings.Join(commands, ";@1 ")
	}
	what := fmt.Sprintf("%q", line)
	if _, err := io.WriteString(c.conn, prompt+line+"\n"); err != nil {
		return nil, false, &runtime.Failure{Step: "connect", Err: fmt.Errorf("send %s to %s: %w", what, c, err)}
	}
	if prompt != "" {
		if _, err := c.answer(maxAnswer); err != nil {
			return nil, false, &runtime.Failure{Step: "connect", Err: fmt.Errorf("HAProxy runtime API at %s: switch to prompt mode: %w", c, err)}
		}
	}
	answers := make([]string, len(commands))
	total := 0
	for i := range answers {
		a, err := c.answer(maxAnswer - total)
		if err != nil {
			return nil, i > 0 || a != "", &runtime.Failure{Step: "connect", Err: fmt.Errorf("read the answer to %s from %s: %w", what, c, err)}
		}
		total += len(a)
		answers[i] = strings.TrimRight(a, "\n")
	}
	return answers, true, nil
}

// connect dials; c.mu is held.
func (c *cli) connect(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, c.network, c.address)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			// No socket, or nothing listening on it: HAProxy is not
			// running. (Permissions, a name that does not resolve or a
			// timeout are not that.)
			err = fmt.Errorf("%w: %w", runtime.ErrUnreachable, err)
		}
		return &runtime.Failure{Step: "connect", Err: fmt.Errorf("HAProxy runtime API at %s: %w", c, err)}
	}
	c.conn = conn
	return nil
}

// answer reads up to the next prompt and returns what came before it. A
// prompt starts a line and is "> ", or on the master CLI "master> " (with
// flags in brackets after "master" on later versions); it is not followed
// by a newline, and no answer has a line that starts like one. What
// follows it (the next answer of the line) stays in c.buf.
func (c *cli) answer(limit int) (string, error) {
	scanned := 0 // c.buf[:scanned] holds no prompt
	for {
		for i := scanned; i < len(c.buf); i++ {
			if i > 0 && c.buf[i-1] != '\n' {
				continue
			}
			if p := c.promptAt(c.buf[i:]); p > 0 {
				a := string(c.buf[:i])
				c.buf = c.buf[i+p:]
				return a, nil
			}
		}
		// A prompt may have begun on the last line: look at it again.
		scanned = max(0, bytes.LastIndexByte(c.buf, '\n')+1)
		if len(c.buf) > limit {
			return "", fmt.Errorf("the answer is longer than %d bytes", maxAnswer)
		}
		// Read into c.buf's spare room, growing it only when little is left.
		if cap(c.buf)-len(c.buf) < 4<<10 {
			c.buf = slices.Grow(c.buf, 32<<10)
		}
		n, err := c.conn.Read(c.buf[len(c.buf):cap(c.buf)])
		c.buf = c.buf[:len(c.buf)+n]
		if err != nil && n == 0 {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return string(c.buf), err
		}
	}
}

// promptAt returns the length of the prompt b starts with, or 0.
func (c *cli) promptAt(b []byte) int {
	if !c.master {
		if bytes.HasPrefix(b, []byte("> ")) {
			return 2
		}
		return 0
	}
	rest, ok := bytes.CutPrefix(b, []byte("master"))
	if !ok {
		return 0
	}
	if bytes.HasPrefix(rest, []byte("[")) {
		end := bytes.IndexByte(rest, ']')
		if end < 0 || bytes.IndexByte(rest[:end], '\n') >= 0 {
			return 0
		}
		rest = rest[end+1:]
	}
	if !bytes.HasPrefix(rest, []byte("> ")) {
		return 0
	}
	return len(b) - len(rest) + 2
}
