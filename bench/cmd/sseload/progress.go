package main

import (
	"fmt"
	"time"
)

// progress counts the steps of a run (one server process each) and
// reports, as each begins, how far the run is and how long the rest
// should take, estimated from the steps done so far.
type progress struct {
	total int
	done  int
	start time.Time
	now   func() time.Time // time.Now; tests set it
}

func newProgress(total int) *progress {
	return &progress{total: total, start: time.Now(), now: time.Now}
}

// step reports the start of the next step through logf, as
//
//	[3/8] stream, 1000 clients (elapsed 42s, about 1m24s left)
func (p *progress) step(logf func(string, ...any), what string) {
	if p == nil {
		return
	}
	p.done++
	elapsed := p.now().Sub(p.start).Round(100 * time.Millisecond)
	eta := "estimate after the first step"
	if p.done > 1 {
		per := elapsed / time.Duration(p.done-1)
		eta = "about " + roundDur(per*time.Duration(p.total-p.done+1)) + " left"
	}
	logf("[%d/%d] %s (elapsed %s, %s)", p.done, p.total, what, roundDur(elapsed), eta)
}

// roundDur formats d as people read durations: whole seconds from 10s
// (42s, 1m24s), tenths of a second from 1s (1.2s), and three significant
// digits below (350ms, 12.3ms, 8.52µs).
func roundDur(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + roundDur(-d)
	case d >= 10*time.Second:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	}
	unit := time.Duration(1)
	for lim := 1000 * time.Nanosecond; lim <= d; lim *= 10 {
		unit *= 10
	}
	return d.Round(unit).String()
}

// describeTook is the progress summary printed when a run ends.
func describeTook(p *progress) string {
	return fmt.Sprintf("%d steps in %s", p.done, roundDur(p.now().Sub(p.start)))
}
