package main

import (
	"fmt"
	"testing"
	"time"
)

func TestRoundDur(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{999 * time.Nanosecond, "999ns"},
		{8523 * time.Nanosecond, "8.52µs"},
		{1234567 * time.Nanosecond, "1.23ms"},
		{12345678 * time.Nanosecond, "12.3ms"},
		{350700 * time.Microsecond, "351ms"},
		{999600 * time.Microsecond, "1s"},
		{1234567891 * time.Nanosecond, "1.2s"},
		{9960 * time.Millisecond, "10s"},
		{42400 * time.Millisecond, "42s"},
		{84600 * time.Millisecond, "1m25s"},
		{-1500 * time.Microsecond, "-1.5ms"},
	}
	for _, tt := range tests {
		if got := roundDur(tt.d); got != tt.want {
			t.Errorf("roundDur(%d ns): got %q, want %q", int64(tt.d), got, tt.want)
		}
	}
}

func TestProgressSteps(t *testing.T) {
	p := newProgress(4)
	now := p.start
	p.now = func() time.Time { return now }
	var lines []string
	logf := func(format string, a ...any) { lines = append(lines, fmt.Sprintf(format, a...)) }
	for i, took := range []time.Duration{10 * time.Second, 20 * time.Second, 1234 * time.Millisecond, 0} {
		p.step(logf, fmt.Sprintf("step %d", i+1))
		now = now.Add(took)
	}
	want := []string{
		"[1/4] step 1 (elapsed 0s, estimate after the first step)",
		"[2/4] step 2 (elapsed 10s, about 30s left)",
		"[3/4] step 3 (elapsed 30s, about 30s left)",
		"[4/4] step 4 (elapsed 31s, about 10s left)",
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines %q, want %d", len(lines), lines, len(want))
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d: got %q, want %q", i+1, lines[i], want[i])
		}
	}
	if got, want := describeTook(p), "4 steps in 31s"; got != want {
		t.Errorf("describeTook: got %q, want %q", got, want)
	}
}
