package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"

	"github.com/jobbridge/jobbridge/bridge"
)

// maxSecretFileBytes bounds a secret file: credentials are short, and a
// large file is the wrong file.
const maxSecretFileBytes = 64 << 10

// redactedMarker replaces secret values in printed configurations.
const redactedMarker = "[redacted]"

// Resolve returns the secret s refers to, read through env (nil is an empty
// environment). A zero SecretRef resolves to a zero Secret. Errors name the
// variable or file, never the value.
func (s SecretRef) Resolve(env func(string) (string, bool)) (bridge.Secret, error) {
	v, _, err := s.ResolveWithWarnings(env)
	return v, err
}

// ResolveWithWarnings is Resolve that also returns warnings: a secret file
// that users other than its owner may read.
func (s SecretRef) ResolveWithWarnings(env func(string) (string, bool)) (bridge.Secret, []string, error) {
	switch set := s.sources(); len(set) {
	case 0:
		return bridge.Secret{}, nil, nil
	case 1:
	default:
		return bridge.Secret{}, nil, fmt.Errorf("set exactly one of env, file or value; found %s", strings.Join(set, " and "))
	}
	switch {
	case s.Value != "":
		return bridge.NewSecret(s.Value), nil, nil
	case s.Env != "":
		if env == nil {
			env = noEnv
		}
		v, ok := env(s.Env)
		if !ok {
			return bridge.Secret{}, nil, fmt.Errorf("environment variable %s is not set; set it, or use {file: PATH}", s.Env)
		}
		if v == "" {
			return bridge.Secret{}, nil, fmt.Errorf("environment variable %s is empty", s.Env)
		}
		return bridge.NewSecret(v), nil, nil
	default:
		return readSecretFile(s.File)
	}
}

func (s SecretRef) sources() []string {
	var set []string
	if s.Value != "" {
		set = append(set, "value")
	}
	if s.Env != "" {
		set = append(set, "env")
	}
	if s.File != "" {
		set = append(set, "file")
	}
	return set
}

func readSecretFile(name string) (bridge.Secret, []string, error) {
	f, err := os.Open(name)
	if err != nil {
		return bridge.Secret{}, nil, fmt.Errorf("cannot read secret file %q: %s", name, pathErrText(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return bridge.Secret{}, nil, fmt.Errorf("cannot read secret file %q: %s", name, pathErrText(err))
	}
	if fi.IsDir() {
		return bridge.Secret{}, nil, fmt.Errorf("secret file %q is a directory; name the file inside it", name)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFileBytes+1))
	if err != nil {
		return bridge.Secret{}, nil, fmt.Errorf("cannot read secret file %q: %s", name, pathErrText(err))
	}
	if len(data) > maxSecretFileBytes {
		return bridge.Secret{}, nil, fmt.Errorf("secret file %q is larger than %d bytes; is it the right file?", name, maxSecretFileBytes)
	}
	// Editors and "echo x > file" end the file with a line break that is
	// not part of the secret.
	v := strings.TrimRight(string(data), "\r\n")
	if v == "" {
		return bridge.Secret{}, nil, fmt.Errorf("secret file %q is empty", name)
	}
	var warns []string
	// Windows has no Unix permission bits to check.
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		warns = append(warns, fmt.Sprintf("secret file %q has mode %04o, so users other than its owner may read it; chmod 600 it", name, fi.Mode().Perm()))
	}
	return bridge.NewSecret(v), warns, nil
}

// pathErrText drops the path an *fs.PathError repeats, since the message
// already names the file.
func pathErrText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
