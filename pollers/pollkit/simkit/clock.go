package simkit

import "time"

// Clock drives a simulator's scripts, credential lifetimes and scheduled
// faults. *pollkit.ManualClock is the one a test moves; nil options mean
// WallClock.
type Clock interface {
	Now() time.Time
}

// WallClock is real time.
type WallClock struct{}

// Now returns time.Now().
func (WallClock) Now() time.Time { return time.Now() }
