package sse

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
