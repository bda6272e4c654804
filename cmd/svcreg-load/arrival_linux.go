package main

import (
	"encoding/binary"
	"io"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/svcreg/svcreg/internal/proccpu"
)

// arrivalConn reads a TCP connection and keeps the time the kernel received
// the last bytes read (SO_TIMESTAMPING): when an answer reached the
// client's machine, however late its goroutine gets a core to read it.
type arrivalConn struct {
	net.Conn
	rc      syscall.RawConn
	oob     [128]byte
	arrived time.Time
}

// withArrival stamps c's incoming bytes; it returns c unchanged, with no
// arrival times, where the kernel cannot.
func withArrival(c net.Conn) (*arrivalConn, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, false
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPING,
			unix.SOF_TIMESTAMPING_RX_SOFTWARE|unix.SOF_TIMESTAMPING_SOFTWARE)
	})
	if err != nil || serr != nil {
		return nil, false
	}
	return &arrivalConn{Conn: c, rc: rc}, true
}

func (c *arrivalConn) Read(p []byte) (int, error) {
	var n, oobn int
	var err error
	rerr := c.rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, err = unix.Recvmsg(int(fd), p, c.oob[:], 0)
		return err != unix.EAGAIN
	})
	switch {
	case rerr != nil:
		return 0, rerr
	case err != nil:
		return 0, err
	case n == 0:
		return 0, io.EOF
	}
	msgs, _ := unix.ParseSocketControlMessage(c.oob[:oobn])
	for _, m := range msgs {
		// scm_timestamping: three timespecs, the first the software stamp.
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPING && len(m.Data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(m.Data[0:]))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:]))
			c.arrived = time.Unix(sec, nsec)
		}
	}
	return n, nil
}

// ownCPU is the CPU time (user and system) this process has used: during a
// fan-out, nearly all of it is the long-poll clients reading their answers,
// on the same cores as the server.
func ownCPU() time.Duration {
	d, _ := proccpu.Self()
	return d
}
