package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBaseConfigIsValid(t *testing.T) {
	c, warns, err := parseDoc(t, doc("", inst()), nil)
	require.NoError(t, err)
	assert.Empty(t, warns)
	require.Len(t, c.Instances, 1)
}

// TestValidationRules checks one rule per row: the message names the key
// path and says what is allowed.
func TestValidationRules(t *testing.T) {
	dir := t.TempDir()
	pem := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(pem, []byte("pem"), 0o600))
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name string
		src  string
		want []string // fragments of one message
	}{
		{"dataDir empty", doc(`dataDir: ""`, inst()), []string{"dataDir: is empty"}},
		{"log level", doc("log: {level: verbose}", inst()), []string{"log.level", `"verbose"`, "debug, info, warn, error"}},
		{"log format", doc("log: {format: jsn}", inst()), []string{"log.format", `"jsn"`, `did you mean "json"`}},

		{"vendor unknown", doc("", inst("vendor", "tos")), []string{"instances[0].vendor", `"tos"`, "tso, helix, arcgis, huawei, hmc", `did you mean "tso"`}},
		{"vendor missing", doc("", inst("vendor", "-")), []string{"instances[0].vendor: is required"}},
		{"name missing", doc("", inst("name", `""`)), []string{"instances[0].name", "empty"}},
		{"name with space", doc("", inst("name", `"a b"`)), []string{"instances[0].name", `"a b"`, "space"}},
		{"name duplicate", doc("", inst(), inst()), []string{"instances[1].name", "instances[0]", "unique"}},
		{"url missing", doc("", inst("url", "-")), []string{"instances[0].url: is required"}},
		{"url scheme", doc("", inst("url", "ftp://host")), []string{"instances[0].url", `"ftp://host"`, "http(s)"}},
		{"url no host", doc("", inst("url", "https://")), []string{"instances[0].url", "with a host"}},
		{"url credentials", doc("", inst("url", "https://u:hunter2@host")), []string{"instances[0].url", "redacted@host", "credentials"}},
		{"job empty", doc("", inst("jobs", `["ok", ""]`)), []string{"instances[0].jobs[1]", "empty"}},
		{"job control char", doc("", inst("jobs", `["a\tb"]`)), []string{"instances[0].jobs[0]", "control character"}},
		{"job too long", doc("", inst("jobs", `["`+strings.Repeat("x", 300)+`"]`)), []string{"instances[0].jobs[0]", "300 bytes"}},
		{"interval negative", doc("", inst("interval", "-1s")), []string{"instances[0].interval", `"-1s"`}},
		{"concurrency zero", doc("", inst("concurrency", "0")), []string{"instances[0].concurrency", "0 is not allowed; use 1 or more"}},
		{"rateLimit negative", doc("", inst("rateLimit", "-1")), []string{"instances[0].rateLimit", "-1"}},
		{"timeout zero", doc("", inst("timeout", "0s")), []string{"instances[0].timeout", `"0s"`, "greater than 0"}},
		{"maxBodyBytes zero", doc("", inst("maxBodyBytes", "0")), []string{"instances[0].maxBodyBytes", "1 or more"}},
		{"username without password", doc("", inst("auth", "{username: u}")), []string{"instances[0].auth.password", "required with auth.username"}},
		{"password without username", doc("", inst("auth", "{password: {env: PW}}")), []string{"instances[0].auth.username", "required"}},
		{"accessKey without secretKey", doc("", inst("auth", "{accessKey: AK}")), []string{"instances[0].auth.secretKey", "required with auth.accessKey"}},
		{"secretKey without accessKey", doc("", inst("auth", "{secretKey: {env: PW}}")), []string{"instances[0].auth.accessKey", "required"}},
		{"label empty key", doc("", inst("labels", `{"": x}`)), []string{"instances[0].labels", "empty key"}},

		{"tls missing file", doc("", inst("tls", "{caFile: "+missing+"}")), []string{"instances[0].tls.caFile", missing, "no such file"}},
		{"tls directory", doc("", inst("tls", "{caFile: "+dir+"}")), []string{"instances[0].tls.caFile", "is a directory"}},
		{"tls cert without key", doc("", inst("tls", "{certFile: "+pem+"}")), []string{"instances[0].tls.keyFile", "required with certFile"}},
		{"tls key without cert", doc("nats: {url: nats://h:4222, tls: {keyFile: " + pem + "}}"), []string{"nats.tls.certFile", "required with keyFile"}},

		{"secret env missing", doc("", inst("auth", "{username: u, password: {env: NOPE}}")), []string{"instances[0].auth.password", "environment variable NOPE is not set"}},
		{"secret env empty", doc("", inst("auth", "{username: u, password: {env: EMPTY}}")), []string{"instances[0].auth.password", "environment variable EMPTY is empty"}},
		{"secret two sources", doc("", inst("auth", "{username: u, password: {env: PW, file: /x}}")), []string{"instances[0].auth.password", "exactly one of env, file or value", "env and file"}},
		{"secret file missing", doc("", inst("auth", "{username: u, password: {file: "+missing+"}}")), []string{"instances[0].auth.password", "secret file", missing}},

		{"schedule interval zero", doc("schedule: {interval: 0s}"), []string{"schedule.interval", `"0s"`, "greater than 0"}},
		{"schedule fast > interval", doc("schedule: {fastInterval: 20s}"), []string{"schedule.fastInterval", `"20s"`, "fastInterval <= interval <= idleInterval"}},
		{"schedule interval > idle", doc("schedule: {interval: 2m, errorBackoffMax: 5m}"), []string{"schedule.idleInterval", `"1m"`, "fastInterval <= interval <= idleInterval"}},
		{"schedule idle zero", doc("schedule: {idleInterval: 0s}"), []string{"schedule.idleInterval", "greater than 0"}},
		{"schedule jitter high", doc("schedule: {jitter: 0.6}"), []string{"schedule.jitter", "0.6", "0 to 0.5"}},
		{"schedule jitter negative", doc("schedule: {jitter: -0.1}"), []string{"schedule.jitter", "0 to 0.5"}},
		{"schedule backoff short", doc("schedule: {errorBackoffMax: 5s}"), []string{"schedule.errorBackoffMax", `"5s"`, "shorter than schedule.interval"}},
		{"schedule fastFor negative", doc("schedule: {fastFor: -1m}"), []string{"schedule.fastFor", `"-1m"`}},
		{"schedule idleAfter negative", doc("schedule: {idleAfter: -1m}"), []string{"schedule.idleAfter"}},
		{"schedule retain negative", doc("schedule: {retainAfterTerminal: -1m}"), []string{"schedule.retainAfterTerminal"}},
		{"schedule stalled negative", doc("schedule: {stalledAfter: -1m}"), []string{"schedule.stalledAfter"}},
		{"schedule workers", doc("schedule: {workers: 0}"), []string{"schedule.workers", "1 or more"}},

		{"publish mode", doc("publish: {mode: binery}"), []string{"publish.mode", "structured, binary", `did you mean "binary"`}},
		{"publish maxInFlight", doc("publish: {maxInFlight: 0}"), []string{"publish.maxInFlight", "1 or more"}},
		{"publish maxPending", doc("publish: {maxInFlight: 100, maxPending: 50}"), []string{"publish.maxPending", "50", "maxInFlight (100)"}},
		{"publish ackTimeout", doc("publish: {ackTimeout: 0s}"), []string{"publish.ackTimeout"}},
		{"publish rawPayloadCap negative", doc("publish: {rawPayloadCap: -1}"), []string{"publish.rawPayloadCap", "-1", "0 (leave the payload out)"}},
		{"publish rawPayloadCap huge", doc("publish: {rawPayloadCap: 2000000}"), []string{"publish.rawPayloadCap", "2000000"}},
		{"publish flushInterval", doc("publish: {flushInterval: 0s}"), []string{"publish.flushInterval"}},

		{"stream name", doc(`stream: {name: "JO.BS"}`), []string{"stream.name", `"JO.BS"`, "letters, digits"}},
		{"stream prefix", doc(`stream: {subjectPrefix: "jobs..x"}`), []string{"stream.subjectPrefix", "empty token"}},
		{"stream prefix wildcard", doc(`stream: {subjectPrefix: "jobs.*"}`), []string{"stream.subjectPrefix", "not allowed"}},
		{"stream replicas zero", doc("stream: {replicas: 0}"), []string{"stream.replicas", "1 to 5"}},
		{"stream replicas six", doc("nats: {url: nats://h:4222}\nstream: {replicas: 6}"), []string{"stream.replicas", "6", "1 to 5"}},
		{"stream replicas embedded", doc("stream: {replicas: 3}"), []string{"stream.replicas", "embedded", "use 1"}},
		{"stream maxAge negative", doc("stream: {maxAge: -1h}"), []string{"stream.maxAge"}},
		{"stream duplicate window", doc("stream: {maxAge: 1m, duplicateWindow: 2m}"), []string{"stream.duplicateWindow", "stream.maxAge"}},
		{"stream duplicate window zero", doc("stream: {duplicateWindow: 0s}"), []string{"stream.duplicateWindow", "greater than 0"}},
		{"stream storage", doc("stream: {storage: disk}"), []string{"stream.storage", `"disk"`, "file, memory"}},
		{"stream bucket", doc(`stream: {stateBucket: "a.b"}`), []string{"stream.stateBucket", `"a.b"`}},
		{"stream buckets equal", doc("stream: {stateBucket: X, watchBucket: X}"), []string{"stream.watchBucket", "must differ"}},

		{"http public without token", doc(`http: {listen: "0.0.0.0:9090"}`), []string{"http.token", "required", `"0.0.0.0:9090"`}},
		{"http all interfaces without token", doc(`http: {listen: ":9090"}`), []string{"http.token", "required"}},
		{"http listen bad", doc(`http: {listen: "nohost"}`), []string{"http.listen", `"nohost"`, "host:port"}},
		{"http port bad", doc(`http: {listen: "127.0.0.1:99999"}`), []string{"http.listen", "0 to 65535"}},
		{"http token env missing", doc(`http: {listen: "0.0.0.0:9090", token: {env: NOPE}}`), []string{"http.token", "NOPE is not set"}},

		{"watch service name", doc(`watchAPI: {serviceName: "a.b"}`), []string{"watchAPI.serviceName", `"a.b"`}},

		{"nats url scheme", doc("nats: {url: http://h:4222}"), []string{"nats.url", `"http://h:4222"`, "nats, tls, ws or wss"}},
		{"nats url bad", doc(`nats: {url: "nats://"}`), []string{"nats.url", "not a NATS server URL"}},
		{"nats creds without url", doc("nats: {credsFile: " + pem + "}"), []string{"nats.credsFile", "nats.url is empty"}},
		{"nats user without url", doc("nats: {user: u, password: {env: PW}}"), []string{"nats.user", "nats.url is empty"}},
		{"nats user without password", doc("nats: {url: nats://h:4222, user: u}"), []string{"nats.password", "required with nats.user"}},
		{"nats password without user", doc("nats: {url: nats://h:4222, password: {env: PW}}"), []string{"nats.user", "required with nats.password"}},
		{"nats two methods", doc("nats: {url: nats://h:4222, token: {env: PW}, credsFile: " + pem + "}"), []string{"nats:", "token and credsFile", "choose one"}},
		{"nats creds missing", doc("nats: {url: nats://h:4222, credsFile: " + missing + "}"), []string{"nats.credsFile", "no such file"}},
		{"nats name empty", doc(`nats: {name: ""}`), []string{"nats.name", "empty"}},
		{"nats embedded listen", doc(`nats: {embedded: {listen: "127.0.0.1"}}`), []string{"nats.embedded.listen", "host:port"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := baseEnv()
			env["EMPTY"] = ""
			_, _, err := parseDoc(t, tt.src, env)
			require.Error(t, err)
			msgs := errLines(err)
			assert.True(t, containsAll(msgs, tt.want...), "want one message with %q, got:\n%s", tt.want, strings.Join(msgs, "\n"))
			for _, m := range msgs {
				assert.True(t, strings.HasPrefix(m, testFile), "every message names the file: %q", m)
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "pw")
	require.NoError(t, os.WriteFile(secretFile, []byte("pw-from-file\n"), 0o644))

	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"plain http", doc("", inst("url", "http://tso.example.com")), []string{"instances[0].url", "plain http://"}},
		{"insecure", doc("", inst("tls", "{insecureSkipVerify: true}")), []string{"instances[0].tls.insecureSkipVerify", "dangerous"}},
		{"nats insecure", doc("nats: {url: tls://h:4222, tls: {insecureSkipVerify: true}}"), []string{"nats.tls.insecureSkipVerify", "dangerous"}},
		{"duplicate job", doc("", inst("jobs", `["1", "2", "1"]`)), []string{"instances[0].jobs[2]", `"1"`, "repeats jobs[0]"}},
		{"inline secret", doc("", inst("auth", "{username: u, password: {value: inline-pw}}")), []string{"instances[0].auth.password", "inline", "{env: NAME}"}},
		{"secret file mode", doc("", inst("auth", "{username: u, password: {file: "+secretFile+"}}")), []string{"instances[0].auth.password", "mode 0644", "chmod 600"}},
		{"nats url credentials", doc("nats: {url: nats://u:pw@h:4222}"), []string{"nats.url", "redacted@h:4222", "credentials"}},
		{"embedded ignored", doc("nats: {url: nats://h:4222, embedded: {listen: 127.0.0.1:4222}}"), []string{"nats.embedded", "ignored"}},
		{"embedded public", doc(`nats: {embedded: {listen: "0.0.0.0:4222"}}`), []string{"nats.embedded.listen", "other hosts"}},
		{"watches nothing", doc("watchAPI: {enabled: false}", inst("jobs", "-")), []string{"instances[0]", "watches nothing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, warns, err := parseDoc(t, tt.src, nil)
			require.NoError(t, err, "a warning is not an error")
			assert.True(t, containsAll(warns, tt.want...), "want one warning with %q, got:\n%s", tt.want, strings.Join(warns, "\n"))
		})
	}
}

func TestAllProblemsReportedTogether(t *testing.T) {
	src := doc(`
log: {level: loud}
stream: {replicas: 0, storage: disk}
publish: {maxInFlight: 10, maxPending: 5}
nats: {ulr: nats://h}
`, inst("vendor", "x", "jobs", `[""]`, "concurrency", "many"), inst("name", "a"))
	_, _, err := parseDoc(t, src, nil)
	msgs := errLines(err)
	for _, want := range []string{
		"log.level", "stream.replicas", "stream.storage", "publish.maxPending", "nats.ulr",
		"instances[0].vendor", "instances[0].jobs[0]", "instances[0].concurrency", "instances[1].name",
	} {
		assert.True(t, containsAll(msgs, want), "missing %s in:\n%s", want, strings.Join(msgs, "\n"))
	}
	assert.GreaterOrEqual(t, len(msgs), 9)
}

func TestUnknownKeys(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"typo", "nats: {ulr: nats://h}", []string{"test.yaml:1: nats.ulr: unknown key", `did you mean "url"?`}},
		{"snake case", "stream:\n  subject_prefix: x", []string{"test.yaml:2: stream.subject_prefix", `did you mean "subjectPrefix"?`}},
		{"wrong case", "DataDir: x", []string{"DataDir", `did you mean "dataDir"?`}},
		{"top level", "instance: []", []string{"instance: unknown key", `did you mean "instances"?`}},
		{"no close key", "publish: {color: red}", []string{"publish.color", "allowed here: mode, maxInFlight, maxPending, ackTimeout, rawPayloadCap, flushInterval"}},
		{"secret file guess", doc("", inst("auth", "{username: u, passwordFile: /run/secrets/x}")), []string{"instances[0].auth.passwordFile", "password: {file: ...}"}},
		{"secret env guess", "http: {token_env: X}", []string{"http.token_env", "token: {env: ...}"}},
		{"in secret", doc("", inst("auth", "{username: u, password: {fiel: /x}}")), []string{"instances[0].auth.password.fiel", `did you mean "file"?`}},
		{"in instance", doc("", inst("intervall", "5s")), []string{"instances[0].intervall", `did you mean "interval"?`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := parseDoc(t, tt.src, nil)
			msgs := errLines(err)
			assert.True(t, containsAll(msgs, tt.want...), "want %q, got:\n%s", tt.want, strings.Join(msgs, "\n"))
		})
	}
}

func TestMalformedValues(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"int", "stream: {replicas: three}", []string{"stream.replicas", `"three" is not a whole number`}},
		{"bool", "stream: {manage: maybe}", []string{"stream.manage", `"maybe" is not a boolean`}},
		{"float", "schedule: {jitter: lots}", []string{"schedule.jitter", `"lots" is not a number`}},
		{"duration without unit", "schedule: {interval: 10}", []string{"schedule.interval", `"10" is not a duration`, `"10s"`}},
		{"duration list", "schedule: {interval: [1]}", []string{"schedule.interval", "want a duration", "got a list"}},
		{"struct scalar", "nats: nats://h", []string{"nats: want a mapping with keys url, embedded", `"nats://h"`}},
		{"list scalar", "instances: {a: 1}", []string{"instances: want a list", "got a mapping"}},
		{"jobs scalar", doc("", inst("jobs", "x")), []string{"instances[0].jobs: want a list"}},
		{"labels list", doc("", inst("labels", "[a]")), []string{"instances[0].labels: want a mapping"}},
		{"labels nested", doc("", inst("labels", "{a: [1]}")), []string{"instances[0].labels", "cannot unmarshal"}},
		{"duplicate key", "log:\n  level: info\n  level: debug\n", []string{"test.yaml:3: log.level: key appears twice (first on line 2)"}},
		{"two documents", "log: {level: info}\n---\nlog: {level: debug}\n", []string{"test.yaml:2: a second YAML document"}},
		{"syntax", "log: [\n", []string{"test.yaml:", "YAML syntax: "}},
		{"syntax tab", "log:\n\tlevel: info\n", []string{"test.yaml:2: YAML syntax: "}},
		{"root list", "- a\n", []string{"want a mapping with keys dataDir"}},
		{"secret scalar", doc("", inst("auth", "{username: u, password: hunter2}")), []string{"instances[0].auth.password", "a secret is a mapping", "{env: NAME}"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := parseDoc(t, tt.src, nil)
			msgs := errLines(err)
			assert.True(t, containsAll(msgs, tt.want...), "want %q, got:\n%s", tt.want, strings.Join(msgs, "\n"))
		})
	}
}

func TestSuggest(t *testing.T) {
	keys := []string{"url", "embedded", "user", "password", "maxInFlight"}
	for got, want := range map[string]string{
		"ulr": "url", "URL": "url", "embeded": "embedded", "pasword": "password",
		"max_in_flight": "maxInFlight", "maxinflght": "maxInFlight", "zzz": "", "colour": "",
	} {
		assert.Equal(t, want, suggest(got, keys), got)
	}
}
