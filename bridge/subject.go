package bridge

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Subject tokens are built from outside data (instance names, vendor job ids),
// so each is escaped before it goes into a subject or a KV key:
//
//   - A-Z, a-z, 0-9 and '-' stand for themselves;
//   - every other byte, '_' included, becomes '_' followed by two upper-case
//     hex digits of the byte (UTF-8 bytes one by one for non-ASCII).
//
// The result holds only [A-Za-z0-9_-]: never '.', '*', '>', white space or a
// leading '$', so a token can neither split into two nor act as a wildcard, and
// it is also a valid KV key. Escaping is a bijection on byte strings: '_' is
// always the start of an escape, so UnescapeToken(EscapeToken(s)) == s and two
// different ids never share a token. Case is kept (subjects are case-sensitive).

// MaxJobIDBytes bounds a vendor job id. Vendor ids are UUIDs or short numbers;
// a longer one is hostile or broken, and an escaped id may triple in size while
// a subject must stay well under the server's 4 KiB control line.
const MaxJobIDBytes = 256

// MaxNameBytes bounds vendor and instance names.
const MaxNameBytes = 64

const hexDigits = "0123456789ABCDEF"

func tokenSafe(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-'
}

// EscapeToken escapes s for use as one subject token (see the package notes).
func EscapeToken(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !tokenSafe(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if tokenSafe(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('_')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0x0f])
	}
	return b.String()
}

// ErrBadToken reports a token that EscapeToken cannot have produced.
var ErrBadToken = errors.New("not an escaped subject token")

// UnescapeToken reverses EscapeToken. It rejects anything EscapeToken would
// not produce, so a token read back from a subject is either exact or an error.
func UnescapeToken(t string) (string, error) {
	if strings.IndexByte(t, '_') < 0 {
		for i := 0; i < len(t); i++ {
			if !tokenSafe(t[i]) {
				return "", fmt.Errorf("%w: byte %q at %d", ErrBadToken, t[i], i)
			}
		}
		return t, nil
	}
	out := make([]byte, 0, len(t))
	for i := 0; i < len(t); i++ {
		c := t[i]
		if tokenSafe(c) {
			out = append(out, c)
			continue
		}
		if c != '_' || i+2 >= len(t) {
			return "", fmt.Errorf("%w: byte %q at %d", ErrBadToken, c, i)
		}
		hi, lo := unhex(t[i+1]), unhex(t[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("%w: bad escape at %d", ErrBadToken, i)
		}
		v := byte(hi<<4 | lo)
		if tokenSafe(v) {
			// EscapeToken never escapes a safe byte: accepting it would give
			// one id two tokens.
			return "", fmt.Errorf("%w: needless escape at %d", ErrBadToken, i)
		}
		out = append(out, v)
		i += 2
	}
	return string(out), nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// ValidateJobID rejects ids that cannot be watched: empty, over MaxJobIDBytes,
// or not valid UTF-8 (an id that is not text cannot be shown to a user, nor
// carried in a CloudEvents string attribute).
func ValidateJobID(id string) error {
	switch {
	case id == "":
		return errors.New("job id is empty: give the id the vendor returned when the job was started")
	case len(id) > MaxJobIDBytes:
		return fmt.Errorf("job id is %d bytes; at most %d are accepted: check that the whole payload was not passed as the id", len(id), MaxJobIDBytes)
	case !utf8.ValidString(id):
		return errors.New("job id is not valid UTF-8")
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			return fmt.Errorf("job id contains control character %U, which a CloudEvents string may not hold", r)
		}
	}
	return nil
}

// ValidateName checks a vendor or instance name from configuration.
func ValidateName(what, name string) error {
	if name == "" {
		return fmt.Errorf("%s name is empty", what)
	}
	if len(name) > MaxNameBytes {
		return fmt.Errorf("%s name %q is longer than %d bytes", what, name, MaxNameBytes)
	}
	for _, r := range name {
		if r < 0x21 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == utf8.RuneError {
			return fmt.Errorf("%s name %q holds a space, control character or invalid UTF-8; use letters, digits and '-'", what, name)
		}
	}
	return nil
}

// Subjects builds and parses the subjects events are published on:
// <prefix>.<vendor>.<instance>.<event>.<job>[.<task>], where <event> is a
// canonical state or one of progress, vanished, stalled, deadline_missed.
type Subjects struct {
	Prefix string
}

// ValidatePrefix checks a subject prefix from configuration: one or more
// dot-separated tokens of letters, digits, '-' and '_'.
func ValidatePrefix(p string) error {
	if p == "" {
		return errors.New("subject prefix is empty")
	}
	for _, tok := range strings.Split(p, ".") {
		if tok == "" {
			return fmt.Errorf("subject prefix %q has an empty token", p)
		}
		for i := 0; i < len(tok); i++ {
			if !tokenSafe(tok[i]) && tok[i] != '_' {
				return fmt.Errorf("subject prefix %q: byte %q is not allowed; use letters, digits, '-', '_' and '.'", p, tok[i])
			}
		}
	}
	return nil
}

// EventToken is the subject token for an event: the target state for a
// transition, the kind otherwise.
func EventToken(kind EventKind, state State) string {
	if kind == KindTransition || kind == "" {
		return string(state)
	}
	return string(kind)
}

// For returns the subject of an event of the given token about job.
func (s Subjects) For(job JobRef, eventToken string) string {
	var b strings.Builder
	b.Grow(len(s.Prefix) + len(job.Vendor) + len(job.Instance) + len(job.ID)*3 + 24)
	b.WriteString(s.Prefix)
	b.WriteByte('.')
	b.WriteString(EscapeToken(job.Vendor))
	b.WriteByte('.')
	b.WriteString(EscapeToken(job.Instance))
	b.WriteByte('.')
	b.WriteString(eventToken)
	b.WriteByte('.')
	b.WriteString(EscapeToken(job.ID))
	if job.Task != "" {
		b.WriteByte('.')
		b.WriteString(EscapeToken(job.Task))
	}
	return b.String()
}

// Filters returns the subscription subjects that select events; an empty
// argument matches anything in its place. Values are escaped, so a filter for
// job "a.b" matches that job only. With a job, the job's own events and its
// tasks' events need two subjects ('>' matches one token or more, never none).
func (s Subjects) Filters(vendor, instance, eventToken, job string) []string {
	tok := func(v string, escape bool) string {
		if v == "" {
			return "*"
		}
		if escape {
			return EscapeToken(v)
		}
		return v
	}
	base := s.Prefix + "." + tok(vendor, true) + "." + tok(instance, true) + "." + tok(eventToken, false) + "."
	if job == "" {
		return []string{base + ">"}
	}
	j := EscapeToken(job)
	return []string{base + j, base + j + ".>"}
}

// Parse reads a subject built by For back into its parts.
func (s Subjects) Parse(subject string) (job JobRef, eventToken string, err error) {
	rest, ok := strings.CutPrefix(subject, s.Prefix+".")
	if !ok {
		return JobRef{}, "", fmt.Errorf("subject %q does not start with %q", subject, s.Prefix+".")
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 4 && len(parts) != 5 {
		return JobRef{}, "", fmt.Errorf("subject %q: want 4 or 5 tokens after the prefix, got %d", subject, len(parts))
	}
	fields := []*string{&job.Vendor, &job.Instance, nil, &job.ID, &job.Task}
	for i, p := range parts {
		if p == "" {
			return JobRef{}, "", fmt.Errorf("subject %q: token %d is empty", subject, i+1)
		}
		if i == 2 {
			if !validEventToken(p) {
				return JobRef{}, "", fmt.Errorf("subject %q: %q is not a state or event kind", subject, p)
			}
			eventToken = p
			continue
		}
		v, err := UnescapeToken(p)
		if err != nil {
			return JobRef{}, "", fmt.Errorf("subject %q token %d: %w", subject, i+1, err)
		}
		*fields[i] = v
	}
	return job, eventToken, nil
}

func validEventToken(t string) bool {
	if State(t).Valid() {
		return true
	}
	switch EventKind(t) {
	case KindProgress, KindVanished, KindStalled, KindDeadlineMissed:
		return true
	}
	return false
}
