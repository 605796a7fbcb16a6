// Package benchkit holds what the benchmarks of several packages share:
// knobs read from the environment, the process's CPU time and medians. It
// imports nothing of jobbridge, so a package's own (internal) benchmarks
// can use it as well as its external ones.
package benchkit

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Ints reads a comma-separated list of whole numbers, each at least min,
// from the environment variable env; def when it is unset. A bad value
// fails the benchmark, naming the variable.
func Ints(tb testing.TB, env string, def []int, min int) []int {
	tb.Helper()
	v := os.Getenv(env)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < min {
			tb.Fatalf("%s=%q: want comma-separated whole numbers, each at least %d", env, v, min)
		}
		out = append(out, n)
	}
	return out
}

// Duration reads a positive duration from the environment variable env;
// def when it is unset. A bad value fails the benchmark.
func Duration(tb testing.TB, env string, def time.Duration) time.Duration {
	tb.Helper()
	v := os.Getenv(env)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		tb.Fatalf("%s=%q: want a positive duration such as 30s", env, v)
	}
	return d
}

// ProcessCPU is the user plus system CPU time this process has used.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Median is the middle value of v (the upper one of an even count).
func Median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
