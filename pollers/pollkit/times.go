package pollkit

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
)

func slicesSort(s []string) { slices.Sort(s) }

// EpochMillis turns a vendor's epoch-millisecond timestamp (ArcGIS, HMC)
// into a VendorTime; 0 and negative values mean "not set" to those vendors.
func EpochMillis(ms int64) bridge.VendorTime {
	vt := bridge.VendorTime{Raw: strconv.FormatInt(ms, 10)}
	if ms > 0 {
		vt.Normalized = time.UnixMilli(ms).UTC()
	}
	return vt
}

// isoLayouts are the ISO-8601 shapes vendors write, most specific first.
var isoLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999", // no zone: taken as UTC
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
}

// ISOTime turns an ISO-8601 timestamp (Helix, Huawei) into a VendorTime.
// A value without a zone is taken as UTC, the vendors' documented default;
// one that does not parse keeps its raw text and no normalized time.
func ISOTime(s string) bridge.VendorTime {
	vt := bridge.VendorTime{Raw: s}
	t := strings.TrimSpace(s)
	if t == "" {
		return vt
	}
	for _, layout := range isoLayouts {
		if p, err := time.Parse(layout, t); err == nil {
			vt.Normalized = p.UTC()
			return vt
		}
	}
	return vt
}
