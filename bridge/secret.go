package bridge

// Secret holds a credential. Every way of printing or encoding it yields a
// redaction marker, so a secret passed by mistake to a log field or an event
// never shows its value. Reveal is the one way to read it.
type Secret struct{ value string }

// NewSecret wraps a credential.
func NewSecret(v string) Secret { return Secret{value: v} }

const redacted = "[redacted]"

// Reveal returns the credential for the one place that must send it.
func (s Secret) Reveal() string { return s.value }

// IsZero reports whether no credential was given.
func (s Secret) IsZero() bool { return s.value == "" }

func (s Secret) String() string   { return redacted }
func (s Secret) GoString() string { return redacted }

// MarshalJSON keeps the value out of JSON (and so out of zerolog's Interface).
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText keeps the value out of text encoders and YAML.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
