package haproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/svcreg/svcreg/render/runtime"
)

// cli sends commands to HAProxy's runtime API: a stats socket at level
// admin, or the master CLI, which forwards each command to the current
// worker ("@1").
type cli struct {
	network, address string
	master           bool
	timeout          time.Duration
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

// run sends one command on its own connection and returns the answer. The
// CLI answers and closes the connection once the client has closed its
// side.
func (c *cli) run(ctx context.Context, command string) (string, error) {
	if strings.ContainsAny(command, "\n;") {
		return "", fmt.Errorf("command %q holds a newline or ';'", command)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, c.network, c.address)
	if err != nil {
		return "", &runtime.Failure{Step: "connect", Err: fmt.Errorf("HAProxy runtime API at %s: %w", c, err)}
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	line := command
	if c.master {
		line = "@1 " + command
	}
	if _, err := io.WriteString(conn, line+"\n"); err != nil {
		return "", &runtime.Failure{Step: "connect", Err: fmt.Errorf("send %q to %s: %w", command, c, err)}
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	b, err := io.ReadAll(io.LimitReader(conn, maxAnswer))
	if err != nil {
		return "", &runtime.Failure{Step: "connect", Err: fmt.Errorf("read the answer to %q from %s: %w", command, c, err)}
	}
	return strings.TrimRight(string(b), "\n"), nil
}
