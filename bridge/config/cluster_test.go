package config

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClusterDefaultsAndOverrides(t *testing.T) {
	c, _, err := parseDoc(t, doc("", inst()), nil)
	require.NoError(t, err)
	assert.Equal(t, Cluster{Shards: 64, LeaseBucket: "JOBBRIDGE_LEASES", LeaseTTL: Duration(15 * time.Second)}, c.Cluster)

	env := baseEnv()
	env["JOBBRIDGE_CLUSTER_ENABLED"] = "true"
	env["JOBBRIDGE_CLUSTER_REPLICAID"] = "jobbridge-7d9f8c6b5-x2k4q"
	c, _, err = parseDoc(t, doc("cluster: {shards: 128, leaseTTL: 30s}", inst()), env)
	require.NoError(t, err)
	assert.True(t, c.Cluster.Enabled)
	assert.Equal(t, "jobbridge-7d9f8c6b5-x2k4q", c.Cluster.ReplicaID)
	assert.Equal(t, 128, c.Cluster.Shards)
	assert.Equal(t, Duration(30*time.Second), c.Cluster.LeaseTTL)
}

func TestClusterValidation(t *testing.T) {
	for _, tc := range []struct {
		name, top string
		want      []string
	}{
		{"shards zero", "cluster: {shards: 0}", []string{"cluster.shards", "0 is not allowed", "1 to 4096"}},
		{"shards huge", "cluster: {shards: 5000}", []string{"cluster.shards", "5000"}},
		{"bucket name", "cluster: {leaseBucket: \"a.b\"}", []string{"cluster.leaseBucket", `"a.b"`}},
		{"replica id", "cluster: {replicaID: \"pod 1\"}", []string{"cluster.replicaID", `"pod 1"`, "letters, digits"}},
		{"ttl short", "cluster: {leaseTTL: 100ms}", []string{"cluster.leaseTTL", `"100ms"`, "at least"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parseDoc(t, doc(tc.top, inst()), nil)
			require.Error(t, err)
			var hit string
			for _, line := range errLines(err) {
				if strings.Contains(line, tc.want[0]) {
					hit = line
				}
			}
			require.NotEmpty(t, hit, "no message names %s: %v", tc.want[0], err)
			for _, w := range tc.want {
				assert.Contains(t, hit, w)
			}
		})
	}
}
