package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets the driver start this test binary as a server process:
// the driver marks its children with childEnv.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestFlagValidation(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in the error message
	}{
		{"negative clients", []string{"-clients=-5"}, "-clients: -5 is out of range"},
		{"zero clients", []string{"-clients=0"}, "-clients: 0 is out of range"},
		{"too many clients", []string{"-clients=1000000"}, "-clients: 1000000 is out of range"},
		{"clients not a number", []string{"-clients=ten"}, `-clients: "ten" is not a whole number`},
		{"zero events", []string{"-events=0"}, "-events: 0 is out of range"},
		{"negative events", []string{"-events=-1"}, "-events: -1 is out of range"},
		{"events count mismatch", []string{"-clients=10,20,30", "-events=5,6"}, "-events: got 2 values for 3"},
		{"size too small", []string{"-size=8"}, "-size: must be between"},
		{"negative size", []string{"-size=-64"}, "-size: must be between"},
		{"zero rate", []string{"-rates=10,0,5"}, "-rates: 0 is out of range"},
		{"negative rate", []string{"-rates=-10"}, "-rates: -10 is out of range"},
		{"negative latency duration", []string{"-latency-duration=-1s"}, "-latency-duration: must be > 0"},
		{"huge latency duration", []string{"-latency-duration=1h"}, "-latency-duration: must be > 0"},
		{"zero timeout", []string{"-timeout=0s"}, "-timeout: must be > 0"},
		{"negative wait-idle", []string{"-wait-idle=-1s"}, "-wait-idle: must be between"},
		{"zero rounds", []string{"-rounds=0"}, "-rounds: must be between 1 and 20, got 0"},
		{"too many rounds", []string{"-rounds=21"}, "-rounds: must be between 1 and 20, got 21"},
		{"negative rounds", []string{"-rounds=-1"}, "-rounds: must be between 1 and 20, got -1"},
		{"rounds not a number", []string{"-rounds=x"}, `invalid value "x" for flag -rounds`},
		{"unknown impl", []string{"-impls=gosse,nginx"}, `-impls: unknown implementation "nginx"`},
		{"private target", []string{"-target=10.0.0.1:8080"}, "-target: 10.0.0.1 is not a loopback address"},
		{"public target", []string{"-target=93.184.216.34:80"}, "is not a loopback address"},
		{"named target", []string{"-target=example.com:80"}, `-target: "example.com" is not a loopback address`},
		{"target without port", []string{"-target=127.0.0.1"}, "-target: \"127.0.0.1\" is not host:port"},
		{"target port zero", []string{"-target=127.0.0.1:0"}, "-target: port 0"},
		{"non-loopback host", []string{"-host=10.0.0.1"}, "-host: 10.0.0.1 is not a loopback address"},
		{"unspecified host", []string{"-host=0.0.0.0"}, "-host: 0.0.0.0 is not a loopback address"},
		{"named host", []string{"-host=example.com"}, "-host: \"example.com\" is not a loopback address"},
		{"serve unknown", []string{"-serve=apache"}, `-serve: unknown implementation "apache"`},
		{"serve on public address", []string{"-serve=gosse", "-listen=0.0.0.0:8080"}, "-listen: 0.0.0.0 is not a loopback address"},
		{"stray argument", []string{"-quick", "extra"}, `unexpected argument "extra"`},
		{"unknown flag", []string{"-bogus"}, "flag provided but not defined"},
		{"unknown scenario", []string{"-scenario=slow"}, `-scenario: unknown scenario "slow"`},
		{"zero stalled", []string{"-scenario=stalled", "-stalled=0"}, "-stalled: 0 is out of range"},
		{"too many stalled", []string{"-scenario=stalled", "-stalled=200,20000"}, "-stalled: 20000 is out of range"},
		{"zero healthy", []string{"-scenario=stalled", "-healthy=0"}, "-healthy: must be between 1 and 1000, got 0"},
		{"zero stall rate", []string{"-scenario=stalled", "-stall-rate=0"}, "-stall-rate: must be between 1 and 10000, got 0"},
		{"long stall duration", []string{"-scenario=stalled", "-stall-duration=2m"}, "-stall-duration: must be > 0 and at most 1m0s, got 2m0s"},
		{"negative rcvbuf", []string{"-rcvbuf=-1"}, "-rcvbuf: must be between 0 and 67108864 bytes, got -1"},
		{"stalled against a target", []string{"-scenario=stalled", "-target=127.0.0.1:8080"}, "-target: -scenario stalled starts a fresh server"},
		{"stall clients without target", []string{"-stall-clients=5"}, "-target (needed by -stall-clients)"},
		{"stall clients on a public target", []string{"-stall-clients=5", "-target=10.0.0.1:80"}, "10.0.0.1 is not a loopback address"},
		{"too many stall clients", []string{"-stall-clients=16000", "-target=127.0.0.1:80"}, "-stall-clients: must be between 1 and 15000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tt.args, &stdout, &stderr)
			if code != 2 {
				t.Errorf("exit code: got %d, want 2 (stderr %q)", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr: got %q, want it to contain %q", stderr.String(), tt.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: got %q, want nothing", stdout.String())
			}
		})
	}
}

func TestFlagDefaults(t *testing.T) {
	tests := []struct {
		name        string
		args        []string
		wantClients []int
		wantEvents  []int
		wantDur     time.Duration
	}{
		{"full", nil, []int{100, 1000, 10000}, []int{1000, 1000, 100}, 5 * time.Second},
		{"quick", []string{"-quick"}, []int{100, 1000}, []int{1000, 200}, time.Second},
		{"one events value for all", []string{"-clients=5,50", "-events=7"}, []int{5, 50}, []int{7, 7}, 5 * time.Second},
		{"localhost target", []string{"-target=localhost:8080", "-clients=3"}, []int{3}, []int{1000}, 5 * time.Second},
		{"ipv6 loopback", []string{"-host=::1", "-clients=3", "-events=9", "-latency-duration=2s"}, []int{3}, []int{9}, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			cfg, err := parseFlags(tt.args, &stderr)
			if err != nil {
				t.Fatalf("parseFlags(%q): %v", tt.args, err)
			}
			if !equalInts(cfg.clients, tt.wantClients) {
				t.Errorf("clients: got %v, want %v", cfg.clients, tt.wantClients)
			}
			if !equalInts(cfg.events, tt.wantEvents) {
				t.Errorf("events: got %v, want %v", cfg.events, tt.wantEvents)
			}
			if cfg.latencyDur != tt.wantDur {
				t.Errorf("latency duration: got %v, want %v", cfg.latencyDur, tt.wantDur)
			}
		})
	}
}

func TestRoundsFlag(t *testing.T) {
	tests := []struct {
		args []string
		want int
	}{
		{nil, 1},
		{[]string{"-rounds=1"}, 1},
		{[]string{"-rounds=5"}, 5},
		{[]string{"-rounds", "20"}, 20},
	}
	for _, tt := range tests {
		cfg, err := parseFlags(tt.args, &bytes.Buffer{})
		if err != nil {
			t.Errorf("parseFlags(%q): %v", tt.args, err)
			continue
		}
		if cfg.rounds != tt.want {
			t.Errorf("parseFlags(%q): got %d rounds, want %d", tt.args, cfg.rounds, tt.want)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
