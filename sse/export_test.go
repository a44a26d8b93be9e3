package sse

import "time"

// WaitFor polls cond every 10 ms for up to d and reports whether it held.
// It serves the tests of both test packages.
func WaitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}
