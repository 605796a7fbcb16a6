//go:build integration && !race

package hmc

import "testing"

// TestIntegrationStorm is the full storm: 10,000 jobs, two cuts, about 25s
// without the race detector. Under -race the bridge's first polls of
// 10,000 jobs alone take over a minute on two cores, so this version needs
// a build without it (go test -tags integration -run IntegrationStorm
// ./notifiers/hmc); TestStorm runs 2,000 jobs under -race in every suite.
func TestIntegrationStorm(t *testing.T) { storm(t, 10000) }
