package pollkit

import (
	"testing"
	"time"
)

func TestEpochMillis(t *testing.T) {
	vt := EpochMillis(1700000000123)
	if vt.Raw != "1700000000123" || !vt.Normalized.Equal(time.UnixMilli(1700000000123)) {
		t.Fatalf("got %+v", vt)
	}
	if vt := EpochMillis(0); !vt.Normalized.IsZero() || vt.Raw != "0" {
		t.Fatalf("0 must mean unset, got %+v", vt)
	}
	if vt := EpochMillis(-1); !vt.Normalized.IsZero() {
		t.Fatalf("-1 must mean unset, got %+v", vt)
	}
}

func TestISOTime(t *testing.T) {
	want := time.Date(2022, 9, 8, 14, 56, 28, 0, time.UTC)
	for _, s := range []string{"2022-09-08T14:56:28Z", "2022-09-08T14:56:28", "2022-09-08T16:56:28+02:00", "2022-09-08T16:56:28+0200", "2022-09-08 14:56:28"} {
		if got := ISOTime(s); !got.Normalized.Equal(want) || got.Raw != s {
			t.Errorf("%q: got %+v", s, got)
		}
	}
	for _, s := range []string{"", "yesterday", "2022-13-45T99:00:00Z"} {
		if got := ISOTime(s); !got.Normalized.IsZero() || got.Raw != s {
			t.Errorf("%q: want raw kept and no normalized time, got %+v", s, got)
		}
	}
}
