package server

import (
	"errors"
	"slices"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// connWatcher tells when the client of a parked long-poll hangs up or
// sends anything, without a goroutine or a read buffer per poll: one epoll
// set holds the parked connections, and one goroutine waits on it. Bytes
// sent on a waiting poll's connection (a pipelined request, or junk) would
// sit unread in the socket's receive buffer until the wait ended, up to
// its size (128 kB by default) of the host's TCP memory a poll: so the
// poll is answered at once instead, and the http.Server reads them.
type connWatcher struct {
	epfd   int
	wakeFD int // an eventfd that stops the wait
	// onEvent is called with a poll whose client hung up (hungUp), or
	// sent something.
	onEvent func(p *parkedPoll, hungUp bool)

	mu     sync.Mutex
	polls  []*parkedPoll // by descriptor (descriptors are small numbers)
	gen    int32         // tells a registration from an earlier one on the same descriptor
	closed bool
	done   chan struct{}
}

func newConnWatcher(onEvent func(p *parkedPoll, hungUp bool)) (*connWatcher, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wakeFD, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakeFD), Pad: -1}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakeFD, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wakeFD)
		return nil, err
	}
	w := &connWatcher{epfd: epfd, wakeFD: wakeFD, onEvent: onEvent, done: make(chan struct{})}
	go w.run()
	return w, nil
}

// add watches p's connection. It does nothing if the descriptor cannot be
// had; the poll is then freed when its wait ends.
func (w *connWatcher) add(p *parkedPoll) {
	sc, ok := netConn(p.conn).(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	if w.gen++; w.gen <= 0 { // -1 is the eventfd's
		w.gen = 1
	}
	gen := w.gen
	rc.Control(func(fd uintptr) {
		// One-shot: a hang-up or bytes are reported once, and a connection
		// handed back to the http.Server after its answer stays registered
		// but silent until it is parked again (or closed, which unregisters
		// it).
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(fd), Pad: gen}
		err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
		if errors.Is(err, unix.ENOENT) {
			err = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
		}
		if err == nil {
			p.fd, p.gen = int32(fd), gen
			if int(fd) >= len(w.polls) {
				w.polls = slices.Grow(w.polls, int(fd)+1-len(w.polls))[:int(fd)+1]
			}
			w.polls[fd] = p
		}
	})
}

// keep watches the connection of p, answered and kept by the poller, for
// its next request or a hang-up, whichever comes first; false if it cannot.
func (w *connWatcher) keep(p *parkedPoll) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || p.gen == 0 {
		return false
	}
	if w.gen++; w.gen <= 0 {
		w.gen = 1
	}
	// The descriptor stays registered from its parking: modify it.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: p.fd, Pad: w.gen}
	if unix.EpollCtl(w.epfd, unix.EPOLL_CTL_MOD, int(p.fd), &ev) != nil {
		return false
	}
	p.gen = w.gen
	w.polls[p.fd] = p
	return true
}

// keptPolls are the polls whose kept connections it watches.
func (w *connWatcher) keptPolls() []*parkedPoll {
	w.mu.Lock()
	defer w.mu.Unlock()
	var kept []*parkedPoll
	for _, p := range w.polls {
		if p != nil && p.kept.Load() == isKept {
			kept = append(kept, p)
		}
	}
	return kept
}

// remove stops reporting polls; their registration stays until the
// descriptor is closed or registered again, and is ignored meanwhile.
func (w *connWatcher) remove(polls ...*parkedPoll) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range polls {
		if p.gen != 0 && int(p.fd) < len(w.polls) && w.polls[p.fd] == p {
			w.polls[p.fd] = nil
		}
	}
}

func (w *connWatcher) run() {
	defer close(w.done)
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(w.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		for _, ev := range events[:n] {
			if ev.Pad == -1 {
				return // closed
			}
			w.mu.Lock()
			var p *parkedPoll
			if int(ev.Fd) < len(w.polls) {
				p = w.polls[ev.Fd]
			}
			if p != nil && p.gen == ev.Pad {
				w.polls[ev.Fd] = nil
			} else {
				p = nil
			}
			w.mu.Unlock()
			if p != nil {
				w.onEvent(p, ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0)
			}
		}
	}
}

// close stops the watcher.
func (w *connWatcher) close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	w.mu.Unlock()
	unix.Write(w.wakeFD, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	<-w.done
	unix.Close(w.epfd)
	unix.Close(w.wakeFD)
}

// writeWatched writes as much of b as the connection of p, a parked poll
// the caller took, takes without waiting, and returns what is left; ok is
// false, and nothing written, where the watcher has no descriptor for it
// (or the connection is TLS). It writes on the descriptor the watcher
// registered, with no lock or system call of the runtime's around it: a
// write to a non-blocking socket does not wait, and the poll's taker owns
// its connection until it is answered.
func writeWatched(p *parkedPoll, b []byte) (rest []byte, ok bool, err error) {
	if p.gen == 0 || p.overTLS {
		return b, false, nil
	}
	for len(b) > 0 {
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(p.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch {
		case errno == syscall.EINTR:
			continue
		case errno == syscall.EAGAIN:
			return b, true, nil
		case errno != 0:
			return b, true, errno
		case n == 0:
			return b, true, nil
		}
		b = b[n:]
	}
	return b, true, nil
}
