package sse

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// BreakOwnedWatch makes the process's watch over taken connections fail
// as it would if the runtime's poller could not wait on it (see
// connWatch.failed), for the external tests; restore lets later streams
// be watched again.
func BreakOwnedWatch() (restore func()) {
	w := &ownedWatch
	w.mu.Lock()
	ep := w.ep
	w.mu.Unlock()
	if ep != nil {
		w.failed(ep)
	} else {
		w.mu.Lock()
		w.broken = true
		w.mu.Unlock()
	}
	return func() {
		w.mu.Lock()
		w.broken = false
		w.mu.Unlock()
	}
}

// OwnedWatched reports how many connections the process's watch holds,
// and whether its epoll instance is open.
func OwnedWatched() (n int, open bool) {
	ownedWatch.mu.Lock()
	defer ownedWatch.mu.Unlock()
	return len(ownedWatch.conns), ownedWatch.ep != nil
}

// PeerState returns the TCP state (as Linux numbers them) of the other
// end of c, a loopback IPv4 connection of this process, from
// /proc/net/tcp: what the server's side of a client's connection is in.
// It returns 0 when the kernel holds no such socket any more (it was
// reset, or closed and done with).
func PeerState(c net.Conn) (byte, error) {
	local, ok1 := c.LocalAddr().(*net.TCPAddr)
	remote, ok2 := c.RemoteAddr().(*net.TCPAddr)
	if !ok1 || !ok2 || local.IP.To4() == nil || remote.IP.To4() == nil {
		return 0, fmt.Errorf("PeerState: %v to %v is not a TCP connection over IPv4", c.LocalAddr(), c.RemoteAddr())
	}
	// The other end's local address is c's remote one, and the other
	// way round: each as the kernel writes it, the address's four bytes
	// read as one number in the machine's order, then the port.
	hexAddr := func(a *net.TCPAddr) string {
		return fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(a.IP.To4()), a.Port)
	}
	want := hexAddr(remote) + " " + hexAddr(local)
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[1]+" "+fields[2] != want {
			continue
		}
		st, err := strconv.ParseUint(fields[3], 16, 8)
		return byte(st), err
	}
	return 0, sc.Err()
}
