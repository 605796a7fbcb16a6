package pollkit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jobbridge/jobbridge/bridge"
)

// DecodeFields decodes body, which must be a JSON object, into the struct v
// in one pass: the poll path's alternative to DecodeObject plus a decode per
// field. Keys match struct fields case-insensitively (encoding/json's rule),
// which covers vendors whose key case varies by version; keys the struct
// does not name are skipped without being copied.
//
// Read leaf fields as Value, so a field of an unexpected type spoils only
// itself. A nested struct or slice whose JSON value has the wrong kind (a
// list where an object was expected) is left zero, the rest of the payload
// is still decoded, and mismatch reports that it happened, for parsers whose
// answer depends on telling such a value from a missing one.
//
// The errors are DecodeObject's: an empty body, an HTML page, invalid JSON or
// a value other than an object wrap bridge.ErrMalformed.
//
// One difference from Object.Get: when a key appears more than once, in the
// same or in another case, the last occurrence wins field by field (Object
// prefers the exact spelling). Vendors do not send such payloads.
func DecodeFields(body []byte, v any) (mismatch bool, err error) {
	trimmed, err := jsonPayload(body)
	if err != nil {
		return false, err
	}
	err = json.Unmarshal(trimmed, v)
	var te *json.UnmarshalTypeError
	switch {
	case err != nil && !errors.As(err, &te):
		return false, fmt.Errorf("%w: %v (body starts %q)", bridge.ErrMalformed, err, Snippet(trimmed, 120))
	case string(trimmed) == "null":
		return false, fmt.Errorf("%w: the body is JSON null where an object was expected", bridge.ErrMalformed)
	case trimmed[0] != '{':
		return false, fmt.Errorf("%w: the body is not a JSON object (body starts %q)", bridge.ErrMalformed, Snippet(trimmed, 120))
	}
	return err != nil, nil
}

// jsonPayload trims body and names the non-JSON bodies a proxy or an SSO
// page sends instead of the API's answer.
func jsonPayload(body []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(body)
	switch {
	case len(trimmed) == 0:
		return nil, fmt.Errorf("%w: the body is empty where JSON was expected", bridge.ErrMalformed)
	case trimmed[0] == '<':
		return nil, fmt.Errorf("%w: the vendor sent an HTML or XML page instead of JSON (%q): check that BaseURL points at the REST API and not at a proxy or login page",
			bridge.ErrMalformed, Snippet(trimmed, 120))
	}
	return trimmed, nil
}

// Value is one JSON value of a struct decoded with DecodeFields (or
// json.Unmarshal), kept as its JSON text: any JSON value is accepted, so a
// field of an unexpected type never fails the decode, and the accessors read
// it exactly as the Object accessors read the same key. The zero Value is a
// missing key. It holds a copy of the text, not the decoded buffer.
type Value struct {
	raw string // the JSON text, outer space trimmed; "" when absent
}

// UnmarshalJSON keeps the value's text. encoding/json calls it for null too,
// so a null is told from a missing key.
func (v *Value) UnmarshalJSON(b []byte) error {
	switch string(b) { // constants without an allocation
	case "null":
		v.raw = "null"
	case "true":
		v.raw = "true"
	case "false":
		v.raw = "false"
	case `""`:
		v.raw = `""`
	default:
		v.raw = string(b)
	}
	return nil
}

// NewValue returns the Value of a JSON text, for tests and for values taken
// from an Object.
func NewValue(raw []byte) Value {
	var v Value
	_ = v.UnmarshalJSON(bytes.TrimSpace(raw))
	return v
}

// Found reports whether the key was present, null included (Object.Get's
// found).
func (v Value) Found() bool { return v.raw != "" }

// IsNull reports a JSON null.
func (v Value) IsNull() bool { return v.raw == "null" }

// Set reports a present value that is not null.
func (v Value) Set() bool { return v.raw != "" && v.raw != "null" }

// JSON returns the value's JSON text; "" when absent.
func (v Value) JSON() string { return v.raw }

// Raw returns the value's JSON text as a new json.RawMessage; nil when
// absent.
func (v Value) Raw() json.RawMessage {
	if v.raw == "" {
		return nil
	}
	return json.RawMessage(v.raw)
}

// IsString reports a JSON string.
func (v Value) IsString() bool { return v.raw != "" && v.raw[0] == '"' }

// String returns the string under key as Object.String does: a missing key
// or JSON null gives ok=false; any other non-string value is an error
// wrapping bridge.ErrMalformed that names key.
func (v Value) String(key string) (s string, ok bool, err error) {
	if !v.Set() {
		return "", false, nil
	}
	if !v.IsString() {
		return "", false, fmt.Errorf("%w: field %q is %s, not a string", bridge.ErrMalformed, key, Snippet([]byte(v.raw), 40))
	}
	return v.unquote(), true, nil
}

// Text returns the value as text, as Object.Text does: a string's contents,
// or the compact JSON of any other value. Missing or null gives ok=false.
func (v Value) Text() (string, bool) {
	if !v.Set() {
		return "", false
	}
	return v.text(), true
}

func (v Value) text() string {
	switch v.raw[0] {
	case '"':
		return v.unquote()
	case '{', '[':
		if strings.ContainsAny(v.raw, " \t\r\n") {
			var b bytes.Buffer
			if json.Compact(&b, []byte(v.raw)) == nil {
				return b.String()
			}
		}
	}
	return v.raw
}

// unquote decodes a JSON string. Most vendor strings hold no escape and are
// valid UTF-8: their contents are a substring of the text, no copy needed.
func (v Value) unquote() string {
	inner := v.raw[1 : len(v.raw)-1]
	if strings.IndexByte(inner, '\\') < 0 && utf8.ValidString(inner) {
		return inner
	}
	var s string
	if json.Unmarshal([]byte(v.raw), &s) != nil {
		return inner
	}
	return s
}
