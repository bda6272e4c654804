package main

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// readerGone returns a channel closed once w, when it is a pipe or a
// socket, has no reader left (the "head" of "svcreg events tail | head
// -1" exited; a Unix socket's peer closed: a TCP peer's close is not
// told, and is found at the next write), so that a command that waits
// long between writes ends then, not at its next write; and a function
// that stops looking. For anything else (a terminal, a file, a buffer)
// the channel is nil.
func readerGone(w io.Writer) (<-chan struct{}, func()) {
	f, ok := w.(*os.File)
	if !ok {
		return nil, func() {}
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&(fs.ModeNamedPipe|fs.ModeSocket) == 0 {
		return nil, func() {}
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, func() {}
	}
	fd := -1
	if rc.Control(func(d uintptr) { fd = int(d) }) != nil || fd < 0 {
		return nil, func() {}
	}
	// The poll ends on w's error or hang-up, or when stop closes the
	// write end of this pipe.
	var p [2]int
	if unix.Pipe2(p[:], unix.O_CLOEXEC) != nil {
		return nil, func() {}
	}
	gone := make(chan struct{})
	go func() {
		defer unix.Close(p[0])
		fds := []unix.PollFd{{Fd: int32(fd)}, {Fd: int32(p[0]), Events: unix.POLLIN}}
		for {
			_, err := unix.Poll(fds, -1)
			switch {
			case errors.Is(err, unix.EINTR):
				continue
			case err != nil, fds[1].Revents != 0, fds[0].Revents&unix.POLLNVAL != 0:
				return // stopped, or nothing to watch (w closed)
			case fds[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0:
				close(gone)
				return
			}
		}
	}()
	return gone, sync.OnceFunc(func() { unix.Close(p[1]) })
}
