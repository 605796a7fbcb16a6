package pollkit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/jobbridge/jobbridge/bridge"
)

// DecodeJSON unmarshals body into v. Any failure wraps bridge.ErrMalformed
// with a hint; an HTML page (a proxy, an SSO login, an error page served with
// 200) is named as such. Struct fields match keys case-insensitively, as
// encoding/json always does.
func DecodeJSON(body []byte, v any) error {
	trimmed, err := jsonPayload(body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(trimmed, v); err != nil {
		return fmt.Errorf("%w: %v (body starts %q)", bridge.ErrMalformed, err, Snippet(trimmed, 120))
	}
	return nil
}

// Object is a JSON object whose keys are looked up case-insensitively, for
// vendors whose key case varies by version (Huawei v2 UPPER, v3 lower; TSO
// ProcessName and processName) and for payloads read field by field, so a
// field of an unexpected type spoils only itself.
type Object map[string]json.RawMessage

// DecodeObject decodes body, which must be a JSON object; anything else
// wraps bridge.ErrMalformed.
func DecodeObject(body []byte) (Object, error) {
	var o Object
	if err := DecodeJSON(body, &o); err != nil {
		return nil, err
	}
	if o == nil {
		return nil, fmt.Errorf("%w: the body is JSON null where an object was expected", bridge.ErrMalformed)
	}
	return o, nil
}

// Get returns the value under key: the exact key if present, else a key
// equal under case folding (the smallest such key, so the choice does not
// depend on map order).
func (o Object) Get(key string) (json.RawMessage, bool) {
	if v, ok := o[key]; ok {
		return v, true
	}
	var found []string
	for k := range o {
		if strings.EqualFold(k, key) {
			found = append(found, k)
		}
	}
	if len(found) == 0 {
		return nil, false
	}
	sort.Strings(found)
	return o[found[0]], true
}

// String returns the string under key. A missing key or JSON null gives
// ok=false; any other non-string value is an error wrapping
// bridge.ErrMalformed.
func (o Object) String(key string) (s string, ok bool, err error) {
	v, found := o.Get(key)
	if !found || isNull(v) {
		return "", false, nil
	}
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false, fmt.Errorf("%w: field %q is %s, not a string", bridge.ErrMalformed, key, Snippet(v, 40))
	}
	return s, true, nil
}

// Text returns the value under key as text: a string's contents, or the
// JSON of any other value (a number, an object). Missing or null gives
// ok=false. For vendor fields kept verbatim whatever their type.
func (o Object) Text(key string) (string, bool) {
	v, found := o.Get(key)
	if !found || isNull(v) {
		return "", false
	}
	return RawText(v), true
}

// RawText is a JSON value as text: a string's contents, any other value's
// compact JSON.
func RawText(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	var b bytes.Buffer
	if json.Compact(&b, v) == nil {
		return b.String()
	}
	return string(v)
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// EscapePathSegment escapes s for one path segment. Every byte outside the
// RFC 3986 unreserved set (letters, digits, "-._~") is percent-encoded: not
// only '/', '?', '#' and '%', but also ';' (a Java servlet container would
// cut a path parameter off there) and the other sub-delimiters some servers
// treat specially. "." and ".." are encoded in full so that nothing on the
// way normalises them into a different path.
func EscapePathSegment(s string) string {
	const hex = "0123456789ABCDEF"
	dots := s == "." || s == ".."
	if !dots && s != "" && strings.IndexFunc(s, func(r rune) bool { return !isUnreserved(r) }) < 0 {
		return s // nothing to escape: no copy
	}
	var b strings.Builder
	b.Grow(len(s) * 3)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !dots && isUnreserved(rune(c)) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0x0f])
	}
	return b.String()
}

// isUnreserved reports the RFC 3986 unreserved characters.
func isUnreserved(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}
