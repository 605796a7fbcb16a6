//go:build !integration

package hmc

import "testing"

// TestStorm is the storm in the normal suite: 2,000 jobs, which the race
// detector on two cores finishes in well under a minute. The 10,000-job
// version is TestIntegrationStorm (build tag integration).
func TestStorm(t *testing.T) { storm(t, 2000) }
