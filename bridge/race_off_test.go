//go:build !race

package bridge_test

// raceEnabled scales load tests down under the race detector.
const raceEnabled = false
