package main

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// readerGone calls onGone once w, when it is a pipe or a socket, has no
// reader left (the "head" of "svcreg events tail | head
// -1" exited; a Unix socket's peer closed: a TCP peer's close is not
// told, and is found at the next write), so that a command that waits
// long between writes ends then, not at its next write. It returns a
// function that stops looking. For anything else (a terminal, a file, a
// buffer) it looks for nothing.
func readerGone(w io.Writer, onGone func()) (stop func()) {
	f, ok := w.(*os.File)
	if !ok {
		return func() {}
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&(fs.ModeNamedPipe|fs.ModeSocket) == 0 {
		return func() {}
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return func() {}
	}
	fd := -1
	if rc.Control(func(d uintptr) { fd = int(d) }) != nil || fd < 0 {
		return func() {}
	}
	// The poll ends on w's error or hang-up, or when stop closes the
	// write end of this pipe.
	var p [2]int
	if unix.Pipe2(p[:], unix.O_CLOEXEC) != nil {
		return func() {}
	}
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
				onGone()
				return
			}
		}
	}()
	return sync.OnceFunc(func() { unix.Close(p[1]) })
}
