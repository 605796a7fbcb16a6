package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEnvKeys(t *testing.T) {
	want := []string{
		"JOBBRIDGE_DATADIR",
		"JOBBRIDGE_LOG_LEVEL", "JOBBRIDGE_LOG_FORMAT",
		"JOBBRIDGE_NATS_URL", "JOBBRIDGE_NATS_EMBEDDED_LISTEN", "JOBBRIDGE_NATS_EMBEDDED_STOREDIR",
		"JOBBRIDGE_NATS_USER", "JOBBRIDGE_NATS_PASSWORD_ENV", "JOBBRIDGE_NATS_PASSWORD_FILE",
		"JOBBRIDGE_NATS_TOKEN_ENV", "JOBBRIDGE_NATS_TOKEN_FILE",
		"JOBBRIDGE_NATS_CREDSFILE", "JOBBRIDGE_NATS_NKEYFILE",
		"JOBBRIDGE_NATS_TLS_CAFILE", "JOBBRIDGE_NATS_TLS_CERTFILE", "JOBBRIDGE_NATS_TLS_KEYFILE", "JOBBRIDGE_NATS_TLS_INSECURESKIPVERIFY",
		"JOBBRIDGE_NATS_NAME",
		"JOBBRIDGE_STREAM_NAME", "JOBBRIDGE_STREAM_SUBJECTPREFIX", "JOBBRIDGE_STREAM_REPLICAS", "JOBBRIDGE_STREAM_MAXAGE",
		"JOBBRIDGE_STREAM_DUPLICATEWINDOW", "JOBBRIDGE_STREAM_STORAGE", "JOBBRIDGE_STREAM_MANAGE",
		"JOBBRIDGE_STREAM_STATEBUCKET", "JOBBRIDGE_STREAM_WATCHBUCKET",
		"JOBBRIDGE_PUBLISH_MODE", "JOBBRIDGE_PUBLISH_MAXINFLIGHT", "JOBBRIDGE_PUBLISH_MAXPENDING",
		"JOBBRIDGE_PUBLISH_ACKTIMEOUT", "JOBBRIDGE_PUBLISH_RAWPAYLOADCAP", "JOBBRIDGE_PUBLISH_FLUSHINTERVAL",
		"JOBBRIDGE_SCHEDULE_INTERVAL", "JOBBRIDGE_SCHEDULE_FASTINTERVAL", "JOBBRIDGE_SCHEDULE_FASTFOR",
		"JOBBRIDGE_SCHEDULE_IDLEAFTER", "JOBBRIDGE_SCHEDULE_IDLEINTERVAL", "JOBBRIDGE_SCHEDULE_JITTER",
		"JOBBRIDGE_SCHEDULE_ERRORBACKOFFMAX", "JOBBRIDGE_SCHEDULE_RETAINAFTERTERMINAL",
		"JOBBRIDGE_SCHEDULE_STALLEDAFTER", "JOBBRIDGE_SCHEDULE_WORKERS",
		"JOBBRIDGE_HTTP_LISTEN", "JOBBRIDGE_HTTP_TOKEN_ENV", "JOBBRIDGE_HTTP_TOKEN_FILE", "JOBBRIDGE_HTTP_PPROF",
		"JOBBRIDGE_WATCHAPI_ENABLED", "JOBBRIDGE_WATCHAPI_SERVICENAME",
		"JOBBRIDGE_CLUSTER_ENABLED", "JOBBRIDGE_CLUSTER_REPLICAID", "JOBBRIDGE_CLUSTER_SHARDS",
		"JOBBRIDGE_CLUSTER_LEASEBUCKET", "JOBBRIDGE_CLUSTER_LEASETTL",
		"JOBBRIDGE_INSTANCE_<NAME>_URL", "JOBBRIDGE_INSTANCE_<NAME>_INTERVAL", "JOBBRIDGE_INSTANCE_<NAME>_CONCURRENCY",
	}
	assert.Equal(t, want, EnvKeys())
}

// TestEveryEnvKeyIsApplied sets each scalar variable to a value of its type
// and checks that the field at its path changed.
func TestEveryEnvKeyIsApplied(t *testing.T) {
	for _, ev := range scalarEnvVars() {
		t.Run(ev.name, func(t *testing.T) {
			c := defaults()
			f := reflect.ValueOf(c).Elem().FieldByIndex(ev.index)
			var val string
			switch {
			case f.Type() == reflect.TypeFor[Duration]():
				val = "7m"
			case f.Kind() == reflect.Bool:
				val = "false"
				if !f.Bool() {
					val = "true"
				}
			case f.Kind() == reflect.Int, f.Kind() == reflect.Int64:
				val = "7"
			case f.Kind() == reflect.Float64:
				val = "0.25"
			default:
				val = "changed"
			}
			before := f.Interface()
			r := newReport(testFile)
			applyEnv(c, envOf(map[string]string{ev.name: val}), r)
			require.Empty(t, r.errs)
			assert.NotEqual(t, before, f.Interface())
			assert.Equal(t, ev.name, r.envs[ev.path])
		})
	}
}

func TestEnvOverrides(t *testing.T) {
	src := doc("stream: {name: FROMFILE}",
		inst("name", "tso-prod", "url", "https://file.example.com"),
		inst("name", "b"))
	env := baseEnv()
	for k, v := range map[string]string{
		"JOBBRIDGE_STREAM_NAME":                   "FROMENV",
		"JOBBRIDGE_PUBLISH_MAXINFLIGHT":           "16",
		"JOBBRIDGE_LOG_LEVEL":                     "debug",
		"JOBBRIDGE_DATADIR":                       "/srv/jb",
		"JOBBRIDGE_NATS_URL":                      "nats://n1:4222,nats://n2:4222",
		"JOBBRIDGE_STREAM_MANAGE":                 "false",
		"JOBBRIDGE_SCHEDULE_JITTER":               "0.2",
		"JOBBRIDGE_SCHEDULE_INTERVAL":             "15s",
		"JOBBRIDGE_HTTP_LISTEN":                   "",
		"JOBBRIDGE_INSTANCE_TSO_PROD_URL":         "https://env.example.com",
		"JOBBRIDGE_INSTANCE_TSO_PROD_INTERVAL":    "3s",
		"JOBBRIDGE_INSTANCE_TSO_PROD_CONCURRENCY": "9",
	} {
		env[k] = v
	}
	c, warns, err := parseDoc(t, src, env)
	require.NoError(t, err)
	assert.Empty(t, warns)
	assert.Equal(t, "FROMENV", c.Stream.Name)
	assert.Equal(t, 16, c.Publish.MaxInFlight)
	assert.Equal(t, "debug", c.Log.Level)
	assert.Equal(t, "/srv/jb", c.DataDir)
	assert.Equal(t, filepath.Join("/srv/jb", "nats"), c.NATS.Embedded.StoreDir, "storeDir follows an overridden dataDir")
	assert.Equal(t, "nats://n1:4222,nats://n2:4222", c.NATS.URL)
	assert.False(t, c.Stream.Manage)
	assert.Equal(t, 0.2, c.Schedule.Jitter)
	assert.Equal(t, "", c.HTTP.Listen, "an empty variable is a value: it turns http off")
	in := c.Instances[0]
	assert.Equal(t, "https://env.example.com", in.URL)
	assert.Equal(t, Duration(3*time.Second), in.Interval)
	assert.Equal(t, 9, in.Concurrency)
	assert.Equal(t, Duration(15*time.Second), c.Instances[1].Interval, "instance b follows the overridden schedule.interval")
}

func TestBadEnvOverrides(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{"JOBBRIDGE_PUBLISH_MAXINFLIGHT": "lots"}, []string{"publish.maxInFlight (from JOBBRIDGE_PUBLISH_MAXINFLIGHT)", `"lots" is not a whole number`}},
		{map[string]string{"JOBBRIDGE_SCHEDULE_INTERVAL": "10"}, []string{"schedule.interval (from JOBBRIDGE_SCHEDULE_INTERVAL)", "not a duration"}},
		{map[string]string{"JOBBRIDGE_STREAM_MANAGE": "nope"}, []string{"JOBBRIDGE_STREAM_MANAGE", "not a boolean"}},
		{map[string]string{"JOBBRIDGE_STREAM_REPLICAS": ""}, []string{"JOBBRIDGE_STREAM_REPLICAS", `"" is not a whole number`}},
		// A valid type but a bad value is reported as coming from the variable.
		{map[string]string{"JOBBRIDGE_LOG_LEVEL": "loud"}, []string{"test.yaml: log.level (from JOBBRIDGE_LOG_LEVEL)", `"loud" is not allowed`}},
		{map[string]string{"JOBBRIDGE_INSTANCE_A_CONCURRENCY": "x"}, []string{"instances[0].concurrency (from JOBBRIDGE_INSTANCE_A_CONCURRENCY)", "whole number"}},
		{map[string]string{"JOBBRIDGE_INSTANCE_A_URL": "ftp://x"}, []string{"instances[0].url (from JOBBRIDGE_INSTANCE_A_URL)", "http(s)"}},
	}
	for _, tt := range tests {
		env := baseEnv()
		for k, v := range tt.env {
			env[k] = v
		}
		_, _, err := parseDoc(t, doc("", inst()), env)
		msgs := errLines(err)
		assert.True(t, containsAll(msgs, tt.want...), "want %q, got:\n%s", tt.want, strings.Join(msgs, "\n"))
	}
}

func TestEnvInstanceNamesThatCollide(t *testing.T) {
	src := doc("", inst("name", "a-b"), inst("name", "a.b"))
	_, _, err := parseDoc(t, src, nil)
	require.NoError(t, err, "colliding names are fine while no variable is set")

	env := baseEnv()
	env["JOBBRIDGE_INSTANCE_A_B_URL"] = "https://x"
	_, _, err = parseDoc(t, src, env)
	assert.True(t, containsAll(errLines(err), "JOBBRIDGE_INSTANCE_A_B_URL", `"a-b" and "a.b"`), "%v", err)
}

func TestEnvSecretReferenceReplacesFileReference(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tok, []byte("tok-from-file\n"), 0o600))

	src := "http:\n  listen: 0.0.0.0:9090\n  token: {env: HTTP_TOKEN}\n"
	env := map[string]string{"JOBBRIDGE_HTTP_TOKEN_FILE": tok}
	c, _, err := parseDoc(t, src, env)
	require.NoError(t, err, "the variable replaces {env: HTTP_TOKEN}, which is not set")
	assert.Equal(t, SecretRef{File: tok}, c.HTTP.Token)

	env["JOBBRIDGE_HTTP_TOKEN_ENV"] = "HTTP_TOKEN"
	env["HTTP_TOKEN"] = "t"
	_, _, err = parseDoc(t, src, env)
	assert.True(t, containsAll(errLines(err), "http.token (from JOBBRIDGE_HTTP_TOKEN_ENV and JOBBRIDGE_HTTP_TOKEN_FILE)", "exactly one"), "%v", err)
}
