package arcgissim

import "time"

// Clock drives job scripts, token expiry, purges and scheduled faults; a
// *pollkit.ManualClock is one a test can step. Delay faults take real time
// whatever the clock: they model the network.
type Clock interface {
	Now() time.Time
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }
