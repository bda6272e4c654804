//go:build !linux

package main

import (
	"net"
	"time"
)

// arrivalConn would keep the time the kernel received the last bytes read;
// only Linux stamps them.
type arrivalConn struct {
	net.Conn
	arrived time.Time
}

func withArrival(net.Conn) (*arrivalConn, bool) { return nil, false }

// ownCPU is the CPU time this process has used; 0 where unknown.
func ownCPU() time.Duration { return 0 }
