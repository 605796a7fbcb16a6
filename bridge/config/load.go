package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads the configuration file at path, applies the environment
// overrides from the process environment and validates the result. Warnings
// (inline secrets, plain http://, disabled certificate checks, ...) are
// returned even when err is not nil, so a validate command can show both.
func Load(path string) (*Config, []string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read configuration: %w", err)
	}
	return Parse(path, data, os.LookupEnv)
}

// Parse is Load without the file system read: name is the file name used in
// messages, data its content, env looks up environment variables (nil is an
// empty environment). It decodes strictly over the defaults, applies the
// overrides, fills derived values, validates, and resolves every secret so
// that a missing one fails here. On error the Config is nil and err joins
// every problem found.
func Parse(name string, data []byte, env func(string) (string, bool)) (*Config, []string, error) {
	if env == nil {
		env = noEnv
	}
	r := newReport(name)
	root, err := parseDocument(data)
	if err != nil {
		return nil, nil, syntaxError(name, err)
	}
	c := defaults()
	if root != nil {
		d := decoder{r: r}
		d.value(root, reflect.ValueOf(c).Elem(), "")
	}
	applyEnv(c, env, r)
	c.finish()
	validate(c, env, r)
	if len(r.errs) > 0 {
		return nil, r.warns, errors.Join(r.errs...)
	}
	return c, r.warns, nil
}

// Validate checks a Config built in code (the demo adds instances to
// Default) by the same rules as Parse, resolving secrets through env (nil is
// an empty environment). It first fills derived values, as Parse does.
// Messages name key paths but no file.
func (c *Config) Validate(env func(string) (string, bool)) ([]string, error) {
	if env == nil {
		env = noEnv
	}
	r := newReport("")
	c.finish()
	validate(c, env, r)
	return r.warns, errors.Join(r.errs...)
}

func noEnv(string) (string, bool) { return "", false }

// parseDocument returns the root node of the one document in data, nil for
// an empty file.
func parseDocument(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, err
	default:
		// A second document would be silently ignored by a plain decode,
		// and whoever wrote it expected it to count.
		return nil, &FieldError{Line: extra.Line, Msg: "a second YAML document starts here; keep one document per file"}
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, nil
		}
		return doc.Content[0], nil
	}
	return &doc, nil
}

// syntaxError turns yaml.v3's "yaml: line N: msg" into file:N: msg.
func syntaxError(file string, err error) *FieldError {
	if fe, ok := err.(*FieldError); ok {
		fe.File = file
		return fe
	}
	fe := &FieldError{File: file, Msg: err.Error()}
	rest, ok := strings.CutPrefix(fe.Msg, "yaml: line ")
	if !ok {
		return fe
	}
	num, msg, ok := strings.Cut(rest, ": ")
	if l, err := strconv.Atoi(num); ok && err == nil {
		fe.Line, fe.Msg = l, "YAML syntax: "+msg
	}
	return fe
}

// FieldError is one problem in a configuration.
type FieldError struct {
	// File is the file name given to Parse; empty for Config.Validate.
	File string
	// Line is the 1-based line of the key in File, or of its closest
	// enclosing key; 0 when unknown or when the value came from Env.
	Line int
	// Path is the key path, such as instances[1].auth.password; empty for
	// the file as a whole.
	Path string
	// Env is the environment variable the value came from, if any.
	Env string
	// Msg says what is wrong and what is allowed. It never holds a secret.
	Msg string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		if e.Env != "" {
			fmt.Fprintf(&b, " (from %s)", e.Env)
		}
		b.WriteString(": ")
	} else if e.Env != "" {
		fmt.Fprintf(&b, "%s: ", e.Env)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// report collects every problem of one Parse, with where each key was set,
// so that all are reported together and each points at its source.
type report struct {
	file  string
	lines map[string]int    // key path -> line in the file
	envs  map[string]string // key path -> variable that set it
	errs  []error
	warns []string
}

func newReport(file string) *report {
	return &report{file: file, lines: map[string]int{}, envs: map[string]string{}}
}

func (r *report) at(path string) *FieldError {
	fe := &FieldError{File: r.file, Path: path}
	if env, ok := r.envs[path]; ok {
		fe.Env = env
		return fe
	}
	// A key left out of the file has no line of its own; its enclosing
	// key's line (the instance, say) is the place to add it.
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := r.lines[p]; ok {
			fe.Line = l
			break
		}
	}
	return fe
}

func (r *report) errorf(path, format string, args ...any) {
	fe := r.at(path)
	fe.Msg = fmt.Sprintf(format, args...)
	r.errs = append(r.errs, fe)
}

func (r *report) errorAt(path string, line int, format string, args ...any) {
	r.errs = append(r.errs, &FieldError{File: r.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (r *report) warnf(path, format string, args ...any) {
	fe := r.at(path)
	fe.Msg = fmt.Sprintf(format, args...)
	r.warns = append(r.warns, fe.Error())
}

// set reports whether the file or the environment gave path or a key below it.
func (r *report) set(path string) bool {
	for p := range r.lines {
		if p == path || strings.HasPrefix(p, path+".") {
			return true
		}
	}
	for p := range r.envs {
		if p == path || strings.HasPrefix(p, path+".") {
			return true
		}
	}
	return false
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// parentPath strips the last key or index: a.b[2].c -> a.b[2] -> a.b -> a -> "".
func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}
