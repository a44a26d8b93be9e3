package fanout

// Inspection is what an engine holds at a moment, as Inspect reports
// it.
type Inspection struct {
	Clients    int  // registered
	Parked     int  // of those, parked (see park.go)
	FedWaiters int  // resuming requests waiting for a topic's feed (see AwaitFed)
	Timers     bool // a heartbeat or poll timer is set, or heartbeats are scheduled
	Writers    int  // goroutines writing: the pool's, and those handed off
}

// Inspect reports what the engine holds now. It serves the tests of the
// packages built on the engine, which cannot see its fields.
func (h *Engine) Inspect() Inspection {
	h.mu.Lock()
	defer h.mu.Unlock()
	var in Inspection
	h.eachClientLocked(func(c *client) {
		in.Clients++
		if c.parked.Load() {
			in.Parked++
		}
	})
	for _, ws := range h.fedWaits {
		in.FedWaiters += len(ws)
	}
	in.Timers = h.beats.Len() > 0 || h.beats.timer != nil || h.gone.armed
	in.Writers = int(h.pool.alive.Load())
	return in
}
