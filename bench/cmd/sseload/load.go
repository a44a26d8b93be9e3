package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Other work on the machine skews every number here, so the report says
// how much CPU was used by processes other than the driver and its
// servers while the run lasted.

// cpuSnapshot is the machine's busy CPU time and this process tree's.
type cpuSnapshot struct {
	at      time.Time
	busy    time.Duration // all CPUs, from /proc/stat
	ours    time.Duration // this process and its waited-for children
	jiffies bool
}

const clockTick = 100 // USER_HZ on Linux

func takeCPUSnapshot() cpuSnapshot {
	s := cpuSnapshot{at: time.Now()}
	if f, err := os.Open("/proc/stat"); err == nil {
		sc := bufio.NewScanner(f)
		if sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 8 && fields[0] == "cpu" {
				var busy int64
				for i, f := range fields[1:9] {
					if i == 3 || i == 4 { // idle, iowait
						continue
					}
					v, _ := strconv.ParseInt(f, 10, 64)
					busy += v
				}
				s.busy = time.Duration(busy) * time.Second / clockTick
				s.jiffies = true
			}
		}
		f.Close()
	}
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	s.ours = time.Duration(self.Utime.Nano() + self.Stime.Nano() + children.Utime.Nano() + children.Stime.Nano())
	return s
}

// foreignLoad reports the CPU, in cores on average, that other processes
// used between a and b.
func foreignLoad(a, b cpuSnapshot) (cores float64, ok bool) {
	wall := b.at.Sub(a.at)
	if !a.jiffies || !b.jiffies || wall <= 0 {
		return 0, false
	}
	other := (b.busy - a.busy) - (b.ours - a.ours)
	return max(0, other.Seconds()/wall.Seconds()), true
}
