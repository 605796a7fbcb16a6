package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

const envPrefix = "JOBBRIDGE"

// envVar is one override of a scalar outside instances.
type envVar struct {
	name  string // JOBBRIDGE_NATS_URL
	path  string // nats.url
	index []int  // field indexes from Config down to the scalar
	ref   string // path of the SecretRef the scalar belongs to, if any
}

// scalarEnvVars derives the overrides from the yaml keys: every scalar
// outside instances, named by its key path. A secret is overridden by naming
// where it is (JOBBRIDGE_NATS_PASSWORD_ENV, ..._FILE), never by a value:
// a value belongs in the variable the _ENV form names.
func scalarEnvVars() []envVar {
	var out []envVar
	var walk func(t reflect.Type, name, path string, index []int)
	walk = func(t reflect.Type, name, path string, index []int) {
		for _, f := range fieldsOf(t) {
			idx := append(slices.Clone(index), f.index)
			n, p := name+"_"+strings.ToUpper(f.key), joinPath(path, f.key)
			switch {
			case f.typ == reflect.TypeFor[SecretRef]():
				for _, sf := range fieldsOf(f.typ) {
					if sf.key == "value" {
						continue
					}
					out = append(out, envVar{
						name:  n + "_" + strings.ToUpper(sf.key),
						path:  p + "." + sf.key,
						index: append(slices.Clone(idx), sf.index),
						ref:   p,
					})
				}
			case f.typ == reflect.TypeFor[Duration]() || isScalarKind(f.typ.Kind()):
				out = append(out, envVar{name: n, path: p, index: idx})
			case f.typ.Kind() == reflect.Struct:
				walk(f.typ, n, p, idx)
			}
			// Lists and maps (instances) are not overridden as a whole.
		}
	}
	walk(reflect.TypeFor[Config](), envPrefix, "", nil)
	return out
}

func isScalarKind(k reflect.Kind) bool {
	switch k {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64:
		return true
	}
	return false
}

// instanceEnvKeys are the instance keys that JOBBRIDGE_INSTANCE_<NAME>_<KEY>
// overrides: the ones that differ between environments sharing one file.
func instanceEnvKeys() []string { return []string{"url", "interval", "concurrency"} }

// instanceEnvName is the override variable of key for the instance name.
func instanceEnvName(name, key string) string {
	return envPrefix + "_INSTANCE_" + envToken(name) + "_" + strings.ToUpper(key)
}

// envToken upper-cases an instance name and turns every byte that a shell
// variable name cannot hold ('-', '.', ...) into '_'.
func envToken(name string) string {
	b := []byte(strings.ToUpper(name))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// EnvKeys lists every environment variable Load reads, in the order of the
// file format; <NAME> stands for an instance name upper-cased with every
// other character than A-Z and 0-9 turned into '_'.
func EnvKeys() []string {
	var keys []string
	for _, ev := range scalarEnvVars() {
		keys = append(keys, ev.name)
	}
	for _, k := range instanceEnvKeys() {
		keys = append(keys, envPrefix+"_INSTANCE_<NAME>_"+strings.ToUpper(k))
	}
	return keys
}

// applyEnv applies the overrides found in env, recording which variable set
// which key so that messages about the value name the variable.
func applyEnv(c *Config, env func(string) (string, bool), r *report) {
	root := reflect.ValueOf(c).Elem()
	for _, ev := range scalarEnvVars() {
		s, ok := env(ev.name)
		if !ok {
			continue
		}
		if ev.ref != "" {
			// Naming where a secret is replaces the file's reference as a
			// whole: {env: A} in the file and _FILE in the environment must
			// not add up to two sources.
			if prev, done := r.envs[ev.ref]; done {
				r.envs[ev.ref] = prev + " and " + ev.name
			} else {
				root.FieldByIndex(ev.index[:len(ev.index)-1]).SetZero()
				r.envs[ev.ref] = ev.name
			}
		}
		r.envs[ev.path] = ev.name
		if err := setScalar(root.FieldByIndex(ev.index), s); err != nil {
			r.errorf(ev.path, "%v", err)
		}
	}

	owners := map[string][]string{}
	for _, in := range c.Instances {
		t := envToken(in.Name)
		if !slices.Contains(owners[t], in.Name) {
			owners[t] = append(owners[t], in.Name)
		}
	}
	fields := fieldsOf(reflect.TypeFor[Instance]())
	for i := range c.Instances {
		in := &c.Instances[i]
		if in.Name == "" {
			continue
		}
		for _, key := range instanceEnvKeys() {
			name := instanceEnvName(in.Name, key)
			s, ok := env(name)
			if !ok {
				continue
			}
			p := fmt.Sprintf("instances[%d].%s", i, key)
			r.envs[p] = name
			if o := owners[envToken(in.Name)]; len(o) > 1 {
				r.errorf(p, "the variable would apply to the instances %s alike; rename one so that each has its own variables", strings.Join(quoteAll(o), " and "))
				continue
			}
			f, _ := findField(fields, key)
			if err := setScalar(reflect.ValueOf(in).Elem().Field(f.index), s); err != nil {
				r.errorf(p, "%v", err)
			}
		}
	}
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}
