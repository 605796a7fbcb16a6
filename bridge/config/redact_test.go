package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRedactedRoundTrips(t *testing.T) {
	src := doc(`
nats: {url: "nats://tok@h1:4222, nats://h2:4222", token: {env: PW}}
stream: {replicas: 3}
`, inst("labels", "{site: fra}", "options", "{flavor: mission, password: p, tokenURL: https://t}"),
		inst("name", "b", "auth", "{username: u, password: {value: inline}}", "jobs", `["x.y", "z"]`))
	c, _, err := parseDoc(t, src, nil)
	require.NoError(t, err)
	out, err := c.Redacted()
	require.NoError(t, err)
	s := string(out)
	assert.Contains(t, s, "url: nats://redacted@h1:4222,nats://h2:4222")
	assert.Contains(t, s, "env: PW")
	assert.Contains(t, s, "value: '[redacted]'")
	assert.Contains(t, s, "password: '[redacted]'")
	assert.Contains(t, s, "tokenURL: https://t")
	assert.Contains(t, s, "maxAge: 168h")
	assert.NotContains(t, s, "inline")

	// The printed configuration is itself a valid configuration: every key,
	// every default, nothing unknown.
	assert.Equal(t, "p", c.Instances[0].Options["password"], "Redacted leaves the Config alone")
	back, _, err := Parse("printed.yaml", out, envOf(baseEnv()))
	require.NoError(t, err)
	c.NATS.URL = back.NATS.URL
	c.Instances[0].Options = back.Instances[0].Options
	c.Instances[1].Auth.Password = back.Instances[1].Auth.Password
	// Absent maps are printed as {} and read back empty.
	assert.Empty(t, back.Instances[1].Labels)
	assert.Empty(t, back.Instances[1].Options)
	back.Instances[1].Labels, back.Instances[1].Options = nil, nil
	assert.Equal(t, c, back)
}
