package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), mode))
		require.NoError(t, os.Chmod(p, mode))
		return p
	}
	good := write("good", "file-secret\n", 0o600)
	crlf := write("crlf", "file-secret\r\n\n", 0o400)
	open := write("open", "file-secret", 0o644)
	empty := write("empty", "\n", 0o600)
	big := write("big", strings.Repeat("x", maxSecretFileBytes+1), 0o600)
	env := envOf(map[string]string{"SET": "env-secret", "EMPTY": ""})

	tests := []struct {
		name    string
		ref     SecretRef
		want    string
		warn    string
		wantErr string
	}{
		{"zero", SecretRef{}, "", "", ""},
		{"value", SecretRef{Value: "inline"}, "inline", "", ""},
		{"env", SecretRef{Env: "SET"}, "env-secret", "", ""},
		{"env unset", SecretRef{Env: "UNSET"}, "", "", "environment variable UNSET is not set"},
		{"env empty", SecretRef{Env: "EMPTY"}, "", "", "environment variable EMPTY is empty"},
		{"file", SecretRef{File: good}, "file-secret", "", ""},
		{"file crlf", SecretRef{File: crlf}, "file-secret", "", ""},
		{"file open mode", SecretRef{File: open}, "file-secret", "mode 0644", ""},
		{"file empty", SecretRef{File: empty}, "", "", "is empty"},
		{"file missing", SecretRef{File: filepath.Join(dir, "nope")}, "", "", "no such file or directory"},
		{"file dir", SecretRef{File: dir}, "", "", "is a directory"},
		{"file big", SecretRef{File: big}, "", "", "larger than"},
		{"two", SecretRef{Env: "SET", Value: "x"}, "", "", "found value and env"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, warns, err := tt.ref.ResolveWithWarnings(env)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				if tt.ref.File != "" {
					assert.Contains(t, err.Error(), tt.ref.File, "the error names the file")
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, s.Reveal())
			if tt.warn != "" {
				require.Len(t, warns, 1)
				assert.Contains(t, warns[0], tt.warn)
			} else {
				assert.Empty(t, warns)
			}
			s2, err := tt.ref.Resolve(env)
			require.NoError(t, err)
			assert.Equal(t, s, s2)
		})
	}
}

func TestResolveNilEnvIsEmpty(t *testing.T) {
	_, err := SecretRef{Env: "PATH"}.Resolve(nil)
	require.ErrorContains(t, err, "PATH is not set")
}

// TestSecretsNeverInMessages drives every path that reports on a secret and
// checks that no error, warning or printed configuration shows one.
func TestSecretsNeverInMessages(t *testing.T) {
	const (
		envSecret    = "ENV-SECRET-d41d8cd9"
		fileSecret   = "FILE-SECRET-8f00b204"
		inlineSecret = "INLINE-SECRET-e9800998"
		urlSecret    = "URL-SECRET-ecf8427e"
		scalarSecret = "SCALAR-SECRET-2a3b4c5d"
		optSecret    = "OPTION-SECRET-77aa88bb"
	)
	dir := t.TempDir()
	sf := filepath.Join(dir, "secret")
	require.NoError(t, os.WriteFile(sf, []byte(fileSecret+"\n"), 0o644))

	env := map[string]string{"PW": envSecret, "NATS_PW": envSecret}
	valid := doc(`
nats:
  url: nats://u:`+urlSecret+`@h:4222
  tls: {insecureSkipVerify: true}
http:
  listen: 0.0.0.0:9090
  token: {value: `+inlineSecret+`}`,
		inst("url", "http://u:"+urlSecret+"@host", "auth", "{username: u, password: {file: "+sf+"}}"),
		inst("name", "b", "auth", "{username: u, password: {env: PW}, token: {value: "+inlineSecret+"}}",
			"options", "{apiKey: "+optSecret+", nested: {clientSecret: "+optSecret+"}, tokenURL: https://x}"),
	)
	broken := valid + inst("name", "c", "auth", "{username: u, password: "+scalarSecret+"}", "url", "https://u:"+urlSecret+"@h") +
		inst("name", "d", "auth", "{username: u, password: {env: PW, value: "+inlineSecret+"}}", "vendor", "x")

	var out []string
	_, warns, err := parseDoc(t, broken, env)
	require.Error(t, err)
	out = append(out, warns...)
	out = append(out, errLines(err)...)

	c, warns, err := parseDoc(t, strings.Replace(valid, "url: http://u:"+urlSecret+"@host", "url: http://host", 1), env)
	require.NoError(t, err)
	out = append(out, warns...)
	red, err := c.Redacted()
	require.NoError(t, err)
	out = append(out, string(red))
	assert.Contains(t, string(red), "[redacted]")
	assert.Contains(t, string(red), sf, "where a secret is stays visible")

	require.NotEmpty(t, out)
	for _, s := range out {
		for _, secret := range []string{envSecret, fileSecret, inlineSecret, urlSecret, scalarSecret, optSecret} {
			assert.NotContains(t, s, secret)
		}
	}
}
