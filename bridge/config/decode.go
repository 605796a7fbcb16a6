package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// The file is decoded by walking the YAML node tree beside the Config type
// rather than by yaml.v3's own decoder with KnownFields: the walk knows the
// key path of every value, so an unknown key, a wrong type or a duplicate key
// is reported with its path, its line and a hint, all of them in one pass,
// where yaml.v3 gives "field x not found in type config.NATS". Decoding onto
// the defaults keeps every key the file leaves out at its default while a key
// the file sets, even to zero or false, keeps the file's value.

// maxNodes bounds the walk: aliases and merge keys can make a small file
// expand without limit (or loop, for a mapping that merges itself).
const maxNodes = 1 << 20

type decoder struct {
	r     *report
	nodes int
	// merging holds the mappings being merged, to refuse a mapping that
	// merges itself through an alias instead of recursing forever.
	merging map[*yaml.Node]bool
}

// field is a struct field that has a yaml key.
type field struct {
	key   string
	index int
	typ   reflect.Type
}

// fieldsOf lists the fields of struct type t with a yaml key, in order. It is
// the one description of the format: the decoder, the environment overrides,
// the secret walk and the tests all derive from it.
func fieldsOf(t reflect.Type) []field {
	var fs []field
	for i := range t.NumField() {
		f := t.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || key == "" || key == "-" {
			continue
		}
		fs = append(fs, field{key: key, index: i, typ: f.Type})
	}
	return fs
}

func keysOf(fs []field) []string {
	keys := make([]string, len(fs))
	for i, f := range fs {
		keys[i] = f.key
	}
	return keys
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// value decodes n into v, which must be settable.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	d.nodes++
	if d.nodes > maxNodes {
		if d.nodes == maxNodes+1 {
			d.r.errorAt(path, n.Line, "the file expands to more than %d values through aliases; simplify it", maxNodes)
		}
		return
	}
	n = resolveAlias(n)
	if isNull(n) {
		// "key:" with nothing after it keeps the default, as yaml.v3 does
		// for fields that are not pointers.
		return
	}
	t := v.Type()
	switch {
	case t == reflect.TypeFor[Duration]():
		d.scalar(n, v, path)
		return
	case t == reflect.TypeFor[SecretRef]() && n.Kind != yaml.MappingNode:
		// The content is not shown: a plain value here is most likely the
		// secret itself.
		d.r.errorAt(path, n.Line, "got %s (not shown: it may be the secret); a secret is a mapping with one of env, file or value, such as {env: NAME} or {file: /run/secrets/name}", kindName(n))
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		d.mapping(n, v, path)
	case reflect.Slice:
		d.sequence(n, v, path)
	case reflect.Map:
		d.anyMap(n, v, path)
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64:
		d.scalar(n, v, path)
	default:
		// Only reachable if a field of an unsupported type is added.
		d.r.errorAt(path, n.Line, "internal error: no decoder for %s", t)
	}
}

func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.r.errorAt(path, n.Line, "want %s, got %s", scalarWant(v.Type()), kindName(n))
		return
	}
	if err := setScalar(v, n.Value); err != nil {
		d.r.errorAt(path, n.Line, "%v", err)
	}
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	fields := fieldsOf(v.Type())
	if n.Kind != yaml.MappingNode {
		d.r.errorAt(path, n.Line, "want a mapping with keys %s, got %s", strings.Join(keysOf(fields), ", "), describe(n))
		return
	}
	// Merged mappings ("<<: *base") first, so the mapping's own keys win.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if isMerge(n.Content[i]) {
			d.merge(n.Content[i+1], v, path)
		}
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if isMerge(k) {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.r.errorAt(path, k.Line, "a key must be a plain word, got %s", kindName(k))
			continue
		}
		p := joinPath(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.r.errorAt(p, k.Line, "key appears twice (first on line %d); keep one", first)
			continue
		}
		seen[k.Value] = k.Line
		f, ok := findField(fields, k.Value)
		if !ok {
			d.r.errorAt(p, k.Line, "%s", unknownKey(k.Value, fields))
			continue
		}
		d.r.lines[p] = k.Line
		d.value(val, v.Field(f.index), p)
	}
}

func isMerge(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge"
}

func (d *decoder) merge(n *yaml.Node, v reflect.Value, path string) {
	n = resolveAlias(n)
	switch n.Kind {
	case yaml.MappingNode:
		d.mergeOne(n, v, path)
	case yaml.SequenceNode:
		// In a list of merged mappings the first wins, so apply it last.
		for i := len(n.Content) - 1; i >= 0; i-- {
			if m := resolveAlias(n.Content[i]); m.Kind == yaml.MappingNode {
				d.mergeOne(m, v, path)
			} else {
				d.r.errorAt(path, m.Line, "<< merges mappings only, got %s", kindName(m))
			}
		}
	default:
		d.r.errorAt(path, n.Line, "<< merges a mapping or a list of mappings, got %s", kindName(n))
	}
}

func (d *decoder) mergeOne(m *yaml.Node, v reflect.Value, path string) {
	if d.merging[m] {
		d.r.errorAt(path, m.Line, "<< merges a mapping into itself")
		return
	}
	if d.merging == nil {
		d.merging = map[*yaml.Node]bool{}
	}
	d.merging[m] = true
	d.mapping(m, v, path)
	delete(d.merging, m)
}

func findField(fs []field, key string) (field, bool) {
	for _, f := range fs {
		if f.key == key {
			return f, true
		}
	}
	return field{}, false
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.r.errorAt(path, n.Line, "want a list (one \"- \" entry per item), got %s", describe(n))
		return
	}
	et := v.Type().Elem()
	out := reflect.MakeSlice(v.Type(), 0, len(n.Content))
	for i, c := range n.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		d.r.lines[p] = c.Line
		e := reflect.New(et)
		if df, ok := e.Interface().(interface{ setDefaults() }); ok {
			df.setDefaults()
		}
		d.value(c, e.Elem(), p)
		out = reflect.Append(out, e.Elem())
	}
	v.Set(out)
}

// anyMap decodes free-form maps (labels, vendor options) with yaml.v3, which
// also refuses duplicate keys in them.
func (d *decoder) anyMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.r.errorAt(path, n.Line, "want a mapping, got %s", describe(n))
		return
	}
	m := reflect.New(v.Type())
	if err := n.Decode(m.Interface()); err != nil {
		d.r.errorAt(path, n.Line, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		return
	}
	v.Set(m.Elem())
}

// setScalar parses s into v. YAML scalars and environment variables share it,
// so "10s" or "true" mean the same in both places.
func setScalar(v reflect.Value, s string) error {
	if v.Type() == reflect.TypeFor[Duration]() {
		d, err := parseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not a boolean; use true or false", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		i, err := strconv.ParseInt(strings.TrimSpace(s), 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not a whole number", s)
		}
		v.SetInt(i)
	case reflect.Float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		v.SetFloat(f)
	default:
		return fmt.Errorf("internal error: %s is not a scalar", v.Type())
	}
	return nil
}

func scalarWant(t reflect.Type) string {
	if t == reflect.TypeFor[Duration]() {
		return "a duration such as \"10s\""
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64:
		return "a whole number"
	case reflect.Float64:
		return "a number"
	}
	return "a string"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a plain value"
	}
	return "nothing"
}

// describe is kindName with a scalar's value, for places that hold no secret.
func describe(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return fmt.Sprintf("%q", n.Value)
	}
	return kindName(n)
}

// unknownKey explains an unknown key: the secret syntax for a guess such as
// passwordFile, the closest known key, or the list of keys allowed here.
func unknownKey(key string, fs []field) string {
	for _, f := range fs {
		if f.typ != reflect.TypeFor[SecretRef]() {
			continue
		}
		for _, sub := range []string{"env", "file", "value"} {
			if normalize(key) == normalize(f.key+sub) {
				return fmt.Sprintf("unknown key; a secret is a mapping: write %s: {%s: ...}", f.key, sub)
			}
		}
	}
	keys := keysOf(fs)
	if s := suggest(key, keys); s != "" {
		return fmt.Sprintf("unknown key; did you mean %q?", s)
	}
	return "unknown key; allowed here: " + strings.Join(keys, ", ")
}

// suggest returns the candidate closest to got, or "" when none is close
// enough to be a likely typo. Case, '_' and '-' are ignored, so
// subject_prefix finds subjectPrefix.
func suggest(got string, candidates []string) string {
	g := normalize(got)
	best, bestD := "", -1
	for _, c := range candidates {
		d := editDistance(g, normalize(c))
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	limit := 1
	switch {
	case len(g) > 8:
		limit = 3
	case len(g) > 4:
		limit = 2
	}
	if bestD < 0 || bestD > limit {
		return ""
	}
	return best
}

func normalize(s string) string {
	s = strings.ToLower(s)
	return strings.NewReplacer("_", "", "-", "").Replace(s)
}

// editDistance is the optimal string alignment distance: Levenshtein plus
// the swap of two neighbours, the most common typo (ulr for url).
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
