package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

const testFile = "test.yaml"

// envOf turns a map into a lookup function, as os.LookupEnv would answer.
func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// inst writes one instance list entry: the fields of a valid tso instance,
// changed by key/value pairs (flow YAML values); a value of "-" drops the key.
func inst(kv ...string) string {
	fields := [][2]string{
		{"name", "a"},
		{"vendor", "tso"},
		{"url", "https://tso.example.com"},
		{"auth", "{username: u, password: {env: PW}}"},
		{"jobs", `["1"]`},
	}
	for i := 0; i+1 < len(kv); i += 2 {
		j := slices.IndexFunc(fields, func(f [2]string) bool { return f[0] == kv[i] })
		if j < 0 {
			fields = append(fields, [2]string{kv[i], kv[i+1]})
		} else {
			fields[j][1] = kv[i+1]
		}
	}
	var b strings.Builder
	first := true
	for _, f := range fields {
		if f[1] == "-" {
			continue
		}
		if first {
			b.WriteString("  - ")
			first = false
		} else {
			b.WriteString("    ")
		}
		fmt.Fprintf(&b, "%s: %s\n", f[0], f[1])
	}
	return b.String()
}

// doc is a configuration of top-level YAML and instance entries.
func doc(top string, instances ...string) string {
	s := top + "\n"
	if len(instances) > 0 {
		s += "instances:\n" + strings.Join(instances, "")
	}
	return s
}

// baseEnv provides the variables the test configurations refer to.
func baseEnv() map[string]string { return map[string]string{"PW": "s3cr3t-pw"} }

func parseDoc(t *testing.T, src string, env map[string]string) (*Config, []string, error) {
	t.Helper()
	if env == nil {
		env = baseEnv()
	}
	return Parse(testFile, []byte(src), envOf(env))
}

// errLines splits a joined error into its messages.
func errLines(err error) []string {
	if err == nil {
		return nil
	}
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, e.Error())
		}
		return out
	}
	return []string{err.Error()}
}

// containsAll reports whether one message holds every fragment.
func containsAll(msgs []string, frags ...string) bool {
	for _, m := range msgs {
		ok := true
		for _, f := range frags {
			if !strings.Contains(m, f) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
