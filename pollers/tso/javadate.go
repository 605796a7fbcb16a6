package tso

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseJavaDate parses java.util.Date.toString() output, the format of TSO's
// startTime: "EEE MMM dd HH:mm:ss zzz yyyy", e.g. "Wed Dec 31 17:59:59 CST
// 1969".
//
// The zone is a short name printed in the server JVM's default zone, and
// short names are ambiguous: CST is US Central (-6), China (+8) or Cuba (-5);
// IST is India (+5:30), Israel (+2) or Ireland (+1); BST is British Summer
// Time (+1) or Bangladesh (+6); AST is Atlantic (-4) or Arabia (+3). Go's
// time.Parse would silently give an unknown short name a zero offset, so the
// name is resolved here, in this order:
//
//  1. zone, when not nil (the TSO server's JVM zone, e.g. Asia/Shanghai): if
//     it uses that short name at that date, its offset wins. This is how a
//     deployment outside the US gets CST or IST right.
//  2. a fixed table of common names, US and European readings first (CST is
//     -6, IST is +5:30, BST is +1, AST is -4).
//  3. GMT+hh:mm / GMT-hh:mm, which Java prints for zones without a name.
//
// Anything else is an error; the caller keeps the raw text.
func ParseJavaDate(s string, zone *time.Location) (time.Time, error) {
	f := strings.Fields(s)
	if len(f) != 6 {
		return time.Time{}, fmt.Errorf("%q is not a Java Date.toString() time (EEE MMM dd HH:mm:ss zzz yyyy)", s)
	}
	wall, err := time.Parse("Mon Jan 2 15:04:05 2006", strings.Join([]string{f[0], f[1], f[2], f[3], f[5]}, " "))
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a Java Date.toString() time: %w", s, err)
	}
	abbr := f[4]
	at := func(loc *time.Location) time.Time {
		return time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), wall.Minute(), wall.Second(), 0, loc)
	}
	if zone != nil {
		// Around a DST change a wall time exists twice (or not at all), and
		// the short name says which: look for an instant near the wall time
		// where zone uses that name, then apply that instant's offset.
		t := at(zone)
		for _, c := range []time.Time{t, t.Add(-time.Hour), t.Add(time.Hour)} {
			if name, off := c.Zone(); name == abbr {
				return at(time.FixedZone(abbr, off)), nil
			}
		}
	}
	if off, ok := zoneOffset(abbr); ok {
		return at(time.FixedZone(abbr, off)), nil
	}
	if off, ok := gmtOffset(abbr); ok {
		return at(time.FixedZone(abbr, off)), nil
	}
	return time.Time{}, fmt.Errorf("time zone %q in %q is not one this parser knows: set the TSO server's time zone in the poller options", abbr, s)
}

// zoneOffset is the fixed table of short names (seconds east of UTC). A
// switch rather than a map keeps it constant.
func zoneOffset(abbr string) (int, bool) {
	const h = 3600
	switch abbr {
	case "UTC", "GMT", "UT", "WET", "Z":
		return 0, true
	case "BST", "WEST", "CET", "MET":
		return 1 * h, true
	case "CEST", "MEST", "EET", "SAST":
		return 2 * h, true
	case "EEST", "MSK":
		return 3 * h, true
	case "PKT":
		return 5 * h, true
	case "IST":
		return 5*h + h/2, true
	case "ICT", "WIB":
		return 7 * h, true
	case "HKT", "SGT", "AWST":
		return 8 * h, true
	case "JST", "KST":
		return 9 * h, true
	case "ACST":
		return 9*h + h/2, true
	case "AEST":
		return 10 * h, true
	case "ACDT":
		return 10*h + h/2, true
	case "AEDT":
		return 11 * h, true
	case "NZST":
		return 12 * h, true
	case "NZDT":
		return 13 * h, true
	case "NDT":
		return -2*h - h/2, true
	case "ADT", "BRT", "ART":
		return -3 * h, true
	case "NST":
		return -3*h - h/2, true
	case "AST", "EDT":
		return -4 * h, true
	case "EST", "CDT":
		return -5 * h, true
	case "CST", "MDT":
		return -6 * h, true
	case "MST", "PDT":
		return -7 * h, true
	case "PST", "AKDT":
		return -8 * h, true
	case "AKST":
		return -9 * h, true
	case "HST":
		return -10 * h, true
	}
	return 0, false
}

// gmtOffset reads Java's custom zone ids: GMT+05:30, GMT-0800, GMT+5.
func gmtOffset(abbr string) (int, bool) {
	rest, ok := strings.CutPrefix(abbr, "GMT")
	if !ok || len(rest) < 2 || (rest[0] != '+' && rest[0] != '-') {
		return 0, false
	}
	sign := 1
	if rest[0] == '-' {
		sign = -1
	}
	hh, mm := rest[1:], "0"
	if i := strings.IndexByte(hh, ':'); i >= 0 {
		hh, mm = hh[:i], hh[i+1:]
	} else if len(hh) == 4 {
		hh, mm = hh[:2], hh[2:]
	}
	if len(hh) == 0 || len(hh) > 2 || len(mm) == 0 || len(mm) > 2 {
		return 0, false
	}
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	if err1 != nil || err2 != nil || h > 23 || m > 59 || h < 0 || m < 0 {
		return 0, false
	}
	return sign * (h*3600 + m*60), true
}
