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
	"gopkg.in/yaml.v3"
)

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	warns, err := c.Validate(nil)
	require.NoError(t, err)
	assert.Empty(t, warns)

	assert.Equal(t, "./data", c.DataDir)
	assert.Equal(t, "info", c.Log.Level)
	assert.Equal(t, "auto", c.Log.Format)
	assert.Equal(t, "", c.NATS.URL)
	assert.Equal(t, "127.0.0.1:0", c.NATS.Embedded.Listen)
	assert.Equal(t, filepath.Join("./data", "nats"), c.NATS.Embedded.StoreDir)
	assert.Equal(t, "jobbridge", c.NATS.Name)
	assert.Equal(t, Stream{
		Name: "JOBS", SubjectPrefix: "jobs", Replicas: 1,
		MaxAge: Duration(168 * time.Hour), DuplicateWindow: Duration(2 * time.Minute),
		Storage: "file", Manage: true, StateBucket: "JOBBRIDGE_STATE", WatchBucket: "JOBBRIDGE_WATCHES",
	}, c.Stream)
	assert.Equal(t, Publish{
		Mode: "structured", MaxInFlight: 1024, MaxPending: 10000, AckTimeout: Duration(5 * time.Second),
		RawPayloadCap: 16384, FlushInterval: Duration(time.Second),
	}, c.Publish)
	assert.Equal(t, Schedule{
		Interval: Duration(10 * time.Second), FastInterval: Duration(2 * time.Second), FastFor: Duration(time.Minute),
		IdleAfter: Duration(10 * time.Minute), IdleInterval: Duration(time.Minute), Jitter: 0.1,
		ErrorBackoffMax: Duration(5 * time.Minute), RetainAfterTerminal: Duration(10 * time.Minute), Workers: 64,
	}, c.Schedule)
	assert.Equal(t, "127.0.0.1:9090", c.HTTP.Listen)
	assert.Equal(t, WatchAPI{Enabled: true, ServiceName: "jobbridge-watch"}, c.WatchAPI)
	assert.Empty(t, c.Instances)
}

func TestEmptyFileIsDefault(t *testing.T) {
	for _, src := range []string{"", "# only a comment\n", "---\n", "~\n"} {
		c, warns, err := Parse(testFile, []byte(src), nil)
		require.NoError(t, err, "%q", src)
		assert.Empty(t, warns)
		assert.Equal(t, Default(), c, "%q", src)
	}
}

func TestOmittedKeysKeepDefaultsAndSetKeysWin(t *testing.T) {
	c, _, err := parseDoc(t, `
stream:
  manage: false
  replicas: 1
http:
  listen: ""
watchAPI: {enabled: false}
publish:
  maxInFlight: 10
`, nil)
	require.NoError(t, err)
	assert.False(t, c.Stream.Manage, "an explicit false is kept")
	assert.Equal(t, "JOBS", c.Stream.Name, "a key left out keeps its default")
	assert.Equal(t, "", c.HTTP.Listen, "an explicit empty string disables http")
	assert.False(t, c.WatchAPI.Enabled)
	assert.Equal(t, "jobbridge-watch", c.WatchAPI.ServiceName)
	assert.Equal(t, 10, c.Publish.MaxInFlight)
	assert.Equal(t, 10000, c.Publish.MaxPending)
}

func TestNullKeepsDefault(t *testing.T) {
	c, _, err := parseDoc(t, "stream:\n  name:\nnats:\n", nil)
	require.NoError(t, err)
	assert.Equal(t, "JOBS", c.Stream.Name)
}

func TestInstanceDefaultsAndDerivedValues(t *testing.T) {
	src := doc("dataDir: /var/lib/jb\nschedule: {interval: 20s, idleInterval: 2m}",
		inst(),
		inst("name", "b", "interval", "3s", "concurrency", "2"))
	c, warns, err := parseDoc(t, src, nil)
	require.NoError(t, err)
	assert.Empty(t, warns)
	require.Len(t, c.Instances, 2)
	a := c.Instances[0]
	assert.Equal(t, 5, a.Concurrency)
	assert.Equal(t, Duration(30*time.Second), a.Timeout)
	assert.Equal(t, int64(4<<20), a.MaxBodyBytes)
	assert.Equal(t, Duration(20*time.Second), a.Interval, "interval left out follows schedule.interval")
	assert.Equal(t, Duration(3*time.Second), c.Instances[1].Interval)
	assert.Equal(t, 2, c.Instances[1].Concurrency)
	assert.Equal(t, filepath.Join("/var/lib/jb", "nats"), c.NATS.Embedded.StoreDir)
	assert.Equal(t, DefaultInstance().Concurrency, 5)
}

func TestDecodesEveryKind(t *testing.T) {
	src := doc("", inst(
		"rateLimit", "2.5",
		"maxBodyBytes", "1024",
		"discover", "true",
		"labels", "{site: fra, tier: '1'}",
		"options", "{flavor: mission, nested: {a: [1, 2]}, port: 61612}",
		"jobs", `["1", 2, "a b.c>*"]`,
	))
	c, _, err := parseDoc(t, src, nil)
	require.NoError(t, err)
	in := c.Instances[0]
	assert.Equal(t, 2.5, in.RateLimit)
	assert.Equal(t, int64(1024), in.MaxBodyBytes)
	assert.True(t, in.Discover)
	assert.Equal(t, map[string]string{"site": "fra", "tier": "1"}, in.Labels)
	assert.Equal(t, "mission", in.Options["flavor"])
	assert.Equal(t, 61612, in.Options["port"])
	assert.Equal(t, []string{"1", "2", "a b.c>*"}, in.Jobs)
}

func TestAnchorsAndMergeKeys(t *testing.T) {
	src := `
base: &base
instances:
  - &tso
    name: a
    vendor: tso
    url: https://tso.example.com
    auth: {username: u, password: {env: PW}}
    concurrency: 7
  - <<: *tso
    name: b
    concurrency: 2
`
	_, _, err := parseDoc(t, src, nil)
	require.Error(t, err, "unknown top-level key base")

	src = strings.Replace(src, "base: &base\n", "", 1)
	c, _, err := parseDoc(t, src, nil)
	require.NoError(t, err)
	require.Len(t, c.Instances, 2)
	assert.Equal(t, "b", c.Instances[1].Name)
	assert.Equal(t, "tso", c.Instances[1].Vendor)
	assert.Equal(t, 2, c.Instances[1].Concurrency, "the mapping's own key wins over the merged one")
	assert.Equal(t, 7, c.Instances[0].Concurrency)
}

func TestSelfMergeDoesNotLoop(t *testing.T) {
	_, _, err := parseDoc(t, "log: &l\n  <<: *l\n", nil)
	require.ErrorContains(t, err, "merges a mapping into itself")
}

func TestDurationFormat(t *testing.T) {
	for d, want := range map[time.Duration]string{
		168 * time.Hour:            "168h",
		2 * time.Minute:            "2m",
		90 * time.Minute:           "1h30m",
		0:                          "0s",
		1500 * time.Millisecond:    "1.5s",
		time.Hour + 30*time.Second: "1h0m30s",
	} {
		assert.Equal(t, want, Duration(d).String())
		out, err := yaml.Marshal(Duration(d))
		require.NoError(t, err)
		var back Duration
		require.NoError(t, yaml.Unmarshal(out, &back))
		assert.Equal(t, Duration(d), back)
	}
	var d Duration
	require.Error(t, yaml.Unmarshal([]byte("10"), &d))
	require.NoError(t, d.UnmarshalText([]byte("1m")))
	assert.Equal(t, time.Minute, d.Std())
}

func TestErrorsCarryLineAndFile(t *testing.T) {
	src := "log:\n  level: loud\ninstances:\n" + inst("vendor", "nope")
	_, _, err := parseDoc(t, src, nil)
	msgs := errLines(err)
	assert.True(t, containsAll(msgs, "test.yaml:2: log.level: \"loud\""), "%q", msgs)
	assert.True(t, containsAll(msgs, "test.yaml:5: instances[0].vendor: \"nope\""), "%q", msgs)
	// A key left out points at the line of what holds it.
	_, _, err = parseDoc(t, doc("", inst("url", "-")), nil)
	assert.True(t, containsAll(errLines(err), "test.yaml:3: instances[0].url: is required"), "%q", errLines(err))
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "jobbridge.yaml")
	require.NoError(t, os.WriteFile(path, []byte("log: {level: debug}\n"), 0o600))
	t.Setenv("JOBBRIDGE_LOG_FORMAT", "json")
	c, warns, err := Load(path)
	require.NoError(t, err)
	assert.Empty(t, warns)
	assert.Equal(t, "debug", c.Log.Level)
	assert.Equal(t, "json", c.Log.Format)

	_, _, err = Load(filepath.Join(dir, "missing.yaml"))
	require.ErrorContains(t, err, "missing.yaml")

	require.NoError(t, os.WriteFile(path, []byte("log: {level: loud}\n"), 0o600))
	_, _, err = Load(path)
	require.ErrorContains(t, err, path+":1: log.level")
}

// fieldPaths lists the key path of every scalar, list, map and secret in t.
func fieldPaths(t reflect.Type, prefix string) []string {
	var out []string
	for _, f := range fieldsOf(t) {
		p := joinPath(prefix, f.key)
		switch {
		case f.typ == reflect.TypeFor[SecretRef]() || f.typ == reflect.TypeFor[Duration]():
			out = append(out, p)
		case f.typ.Kind() == reflect.Struct:
			out = append(out, fieldPaths(f.typ, p)...)
		case f.typ.Kind() == reflect.Slice && f.typ.Elem().Kind() == reflect.Struct:
			out = append(out, fieldPaths(f.typ.Elem(), p+"[0]")...)
		default:
			out = append(out, p)
		}
	}
	return out
}

func TestYAMLTagsAreLowerCamelAndEveryFieldHasOne(t *testing.T) {
	var check func(reflect.Type)
	check = func(rt reflect.Type) {
		for i := range rt.NumField() {
			f := rt.Field(i)
			tag := f.Tag.Get("yaml")
			require.NotEmpty(t, tag, "%s.%s has no yaml key", rt.Name(), f.Name)
			assert.Equal(t, strings.ToLower(tag[:1]), tag[:1], "%s.%s", rt.Name(), f.Name)
			assert.NotContains(t, tag, "_")
			ft := f.Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				check(ft)
			}
		}
	}
	check(reflect.TypeFor[Config]())
}
