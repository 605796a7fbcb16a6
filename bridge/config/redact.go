package config

import (
	"bytes"
	"maps"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Redacted returns the effective configuration as YAML, defaults and
// overrides applied, for jobbridge validate --print. Inline secret values,
// credentials in URLs and vendor options whose name says they hold a secret
// are replaced by "[redacted]"; where a secret comes from (env, file) stays,
// since that is what a reader checks.
func (c *Config) Redacted() ([]byte, error) {
	cp := *c
	cp.NATS.URL = redactURLList(c.NATS.URL)
	cp.Instances = slices.Clone(c.Instances)
	for i := range cp.Instances {
		in := &cp.Instances[i]
		if in.URL != "" {
			in.URL = redactURL(in.URL)
		}
		in.Jobs = slices.Clone(in.Jobs)
		in.Labels = maps.Clone(in.Labels)
		in.Options = redactOptions(in.Options)
	}
	// SecretRef.MarshalYAML replaces the inline values.
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&cp); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func redactURLList(s string) string {
	if s == "" {
		return s
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = redactURL(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

// redactOptions copies vendor options, replacing values whose key names a
// secret. Options are raw and vendor-defined, so this guards against a
// credential put there by mistake; keys naming where something is (tokenURL,
// keyFile) are kept.
func redactOptions(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		if secretKeyName(k) {
			out[k] = redactedMarker
		} else {
			out[k] = redactAny(v)
		}
	}
	return out
}

func redactAny(v any) any {
	switch t := v.(type) {
	case map[string]any:
		return redactOptions(t)
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = redactAny(e)
		}
		return out
	}
	return v
}

func secretKeyName(k string) bool {
	n := normalize(k)
	for _, safe := range []string{"url", "uri", "file", "path", "env", "refresh", "ttl"} {
		if strings.HasSuffix(n, safe) {
			return false
		}
	}
	for _, s := range []string{"password", "passwd", "secret", "token", "apikey", "credential", "privatekey"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}
