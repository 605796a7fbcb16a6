//go:build race

package bridge_test

// raceEnabled scales load tests down under the race detector, which makes
// every poll and publish several times slower.
const raceEnabled = true
