package config

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

const examplesDir = "../../deploy/config"

// exampleEnv provides every variable an example refers to: any name outside
// the JOBBRIDGE_ overrides resolves to a placeholder.
func exampleEnv(name string) (string, bool) {
	if strings.HasPrefix(name, envPrefix+"_") {
		return "", false
	}
	return "placeholder-for-" + name, true
}

func TestExamplesAreValid(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no examples under %s", examplesDir)
	vendors := map[string]bool{}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			c, warns, err := Parse(f, data, exampleEnv)
			require.NoError(t, err)
			assert.Empty(t, warns, "an example should show good practice")
			for _, in := range c.Instances {
				vendors[in.Vendor] = true
			}
		})
	}
	for _, v := range Vendors() {
		assert.True(t, vendors[v], "no example instance for vendor %s", v)
		_, err := os.Stat(filepath.Join(examplesDir, v+".yaml"))
		assert.NoError(t, err)
	}
}

// TestFullExampleShowsEveryKeyWithItsDefault keeps jobbridge.example.yaml in
// step with the types: every key is present, and the values are the defaults.
func TestFullExampleShowsEveryKeyWithItsDefault(t *testing.T) {
	path := filepath.Join(examplesDir, "jobbridge.example.yaml")
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	c, _, err := Parse(path, data, exampleEnv)
	require.NoError(t, err)

	instances := c.Instances
	c.Instances = nil
	assert.Equal(t, Default(), c, "the top-level values are the defaults")
	require.Len(t, instances, 1)
	in := instances[0]
	def := DefaultInstance()
	assert.Equal(t, def.Concurrency, in.Concurrency)
	assert.Equal(t, def.Timeout, in.Timeout)
	assert.Equal(t, def.MaxBodyBytes, in.MaxBodyBytes)
	assert.Equal(t, c.Schedule.Interval, in.Interval)
	assert.Zero(t, in.RateLimit)
	assert.False(t, in.Discover)
	assert.Equal(t, TLS{}, in.TLS)

	var root yaml.Node
	require.NoError(t, yaml.Unmarshal(data, &root))
	present := map[string]bool{}
	collectPaths(root.Content[0], "", present)
	var missing []string
	for _, p := range fieldPaths(reflect.TypeFor[Config](), "") {
		if !present[p] {
			missing = append(missing, p)
		}
	}
	sort.Strings(missing)
	assert.Empty(t, missing, "keys missing from %s", path)
}

func collectPaths(n *yaml.Node, prefix string, out map[string]bool) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := joinPath(prefix, n.Content[i].Value)
			out[p] = true
			collectPaths(n.Content[i+1], p, out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if i == 0 {
				collectPaths(c, prefix+"[0]", out)
			}
		}
	}
}
