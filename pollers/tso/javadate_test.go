package tso

import (
	"testing"
	"time"
)

func mustLoad(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("time zone %s: %v (the tests need a tz database)", name, err)
	}
	return loc
}

func TestParseJavaDate(t *testing.T) {
	chicago, shanghai, dublin := mustLoad(t, "America/Chicago"), mustLoad(t, "Asia/Shanghai"), mustLoad(t, "Europe/Dublin")
	utc := func(y int, mo time.Month, d, h, mi, s int) time.Time {
		return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
	}
	cases := []struct {
		in   string
		zone *time.Location
		want time.Time
	}{
		// The vendor's own example: one second before the epoch.
		{"Wed Dec 31 17:59:59 CST 1969", nil, utc(1969, 12, 31, 23, 59, 59)},
		{"Thu Mar 06 10:15:30 CST 2025", nil, utc(2025, 3, 6, 16, 15, 30)},
		{"Mon Jul 07 10:15:30 CDT 2025", nil, utc(2025, 7, 7, 15, 15, 30)},
		{"Mon Jul 07 10:15:30 EDT 2025", nil, utc(2025, 7, 7, 14, 15, 30)},
		{"Mon Jan 06 10:15:30 EST 2025", nil, utc(2025, 1, 6, 15, 15, 30)},
		{"Mon Jan 06 10:15:30 MST 2025", nil, utc(2025, 1, 6, 17, 15, 30)},
		{"Mon Jul 07 10:15:30 MDT 2025", nil, utc(2025, 7, 7, 16, 15, 30)},
		{"Mon Jan 06 10:15:30 PST 2025", nil, utc(2025, 1, 6, 18, 15, 30)},
		{"Mon Jul 07 10:15:30 PDT 2025", nil, utc(2025, 7, 7, 17, 15, 30)},
		{"Mon Jan 06 10:15:30 UTC 2025", nil, utc(2025, 1, 6, 10, 15, 30)},
		{"Mon Jan 06 10:15:30 GMT 2025", nil, utc(2025, 1, 6, 10, 15, 30)},
		{"Mon Jan 06 10:15:30 CET 2025", nil, utc(2025, 1, 6, 9, 15, 30)},
		{"Mon Jul 07 10:15:30 CEST 2025", nil, utc(2025, 7, 7, 8, 15, 30)},
		{"Mon Jul 07 10:15:30 BST 2025", nil, utc(2025, 7, 7, 9, 15, 30)},
		{"Mon Jan 06 10:15:30 IST 2025", nil, utc(2025, 1, 6, 4, 45, 30)},
		{"Mon Jan 06 10:15:30 GMT+05:30 2025", nil, utc(2025, 1, 6, 4, 45, 30)},
		{"Mon Jan 06 10:15:30 GMT-0800 2025", nil, utc(2025, 1, 6, 18, 15, 30)},
		{"Mon Jan 6 10:15:30 JST 2025", nil, utc(2025, 1, 6, 1, 15, 30)},
		// The server's zone settles ambiguous names.
		{"Thu Mar 06 10:15:30 CST 2025", shanghai, utc(2025, 3, 6, 2, 15, 30)},
		{"Thu Mar 06 10:15:30 CST 2025", chicago, utc(2025, 3, 6, 16, 15, 30)},
		{"Mon Jul 07 10:15:30 IST 2025", dublin, utc(2025, 7, 7, 9, 15, 30)},
		// ...and falls back to the table for names it does not use.
		{"Mon Jul 07 10:15:30 UTC 2025", shanghai, utc(2025, 7, 7, 10, 15, 30)},
		{"Mon Jan 06 10:15:30 EST 2025", chicago, utc(2025, 1, 6, 15, 15, 30)},
		// 01:30 happens twice in Chicago on 2 Nov 2025; the name says which.
		{"Sun Nov 02 01:30:00 CDT 2025", chicago, utc(2025, 11, 2, 6, 30, 0)},
		{"Sun Nov 02 01:30:00 CST 2025", chicago, utc(2025, 11, 2, 7, 30, 0)},
	}
	for _, c := range cases {
		got, err := ParseJavaDate(c.in, c.zone)
		if err != nil {
			t.Errorf("ParseJavaDate(%q, %v): %v", c.in, c.zone, err)
			continue
		}
		if !got.Equal(c.want) {
			t.Errorf("ParseJavaDate(%q, %v) = %v, want %v", c.in, c.zone, got.UTC(), c.want)
		}
	}
}

func TestParseJavaDateRejects(t *testing.T) {
	for _, in := range []string{
		"", "2025-01-06T10:15:30Z", "Mon Jan 06 10:15:30 2025", "Mon Jan 06 10:15:30 XYZ 2025",
		"Mon Jan 06 25:15:30 UTC 2025", "Mon Foo 06 10:15:30 UTC 2025", "Mon Jan 06 10:15:30 GMT+25:00 2025",
		"Mon Jan 06 10:15:30 GMT+ 2025", "Mon Jan 06 10:15:30 UTC 2025 extra",
	} {
		if got, err := ParseJavaDate(in, nil); err == nil {
			t.Errorf("ParseJavaDate(%q) = %v, want an error", in, got)
		}
	}
}
