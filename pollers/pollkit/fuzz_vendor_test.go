package pollkit

import (
	"net/http"
	"testing"
	"time"
)

// FuzzRetryAfter: a vendor's Retry-After header is either ignored or a
// wait between zero and the end of time, never negative, never a panic.
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"1", "0", "-1", "120", "99999999999999999999", "9223372036854775807", "Wed, 21 Oct 2015 07:28:00 GMT", "Mon, 01 Jan 3000 00:00:00 GMT", " 3 ", "1.5", "soon", ""} {
		f.Add(s)
	}
	now := time.Date(2025, 3, 6, 16, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{}
		h.Set("Retry-After", v)
		d, ok := RetryAfter(h, now)
		if ok && d < 0 {
			t.Fatalf("RetryAfter(%q) = %v, negative", v, d)
		}
		if !ok && d != 0 {
			t.Fatalf("RetryAfter(%q) = %v without ok", v, d)
		}
	})
}

// FuzzISOTime: a vendor timestamp is kept verbatim, and normalized to UTC
// when it parses.
func FuzzISOTime(f *testing.F) {
	for _, s := range []string{"2025-03-06T16:00:00Z", "2025-03-06T16:00:00.123+05:30", "2025-03-06 16:00:00", "0000-00-00T00:00:00Z", "9999-12-31T23:59:59.999999999-23:59", "", " ", "not a time"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		vt := ISOTime(s)
		if vt.Raw != s {
			t.Fatalf("ISOTime(%q).Raw = %q", s, vt.Raw)
		}
		if !vt.Normalized.IsZero() && vt.Normalized.Location() != time.UTC {
			t.Fatalf("ISOTime(%q) normalized to %v, not UTC", s, vt.Normalized)
		}
	})
}
