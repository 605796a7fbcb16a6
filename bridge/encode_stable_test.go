package bridge_test

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/jobbridge/jobbridge/bridge"
)

// TestEventIDIsStableAcrossVersions pins the event id derivation to its
// specification, sha256(source 0 key 0 kind 0 seq prevFP fp progFP), first 16
// bytes in hex. A bridge upgraded between a publish and its re-detection
// after a crash must produce the same id, or the duplicate window cannot
// drop the copy: an optimisation of the hot path must never change it.
func TestEventIDIsStableAcrossVersions(t *testing.T) {
	spec := func(source, key string, kind bridge.EventKind, nums ...uint64) string {
		h := sha256.New()
		h.Write([]byte(source + "\x00" + key + "\x00" + string(kind) + "\x00"))
		for _, n := range nums {
			h.Write(binary.BigEndian.AppendUint64(nil, n))
		}
		return hex.EncodeToString(h.Sum(nil)[:16])
	}
	long := strings.Repeat("j.*>", 64) // escapes to 768 bytes: past the stack buffer
	for _, job := range []bridge.JobRef{
		{Vendor: "tso", Instance: "prod", ID: "a1b2"},
		{Vendor: "hmc", Instance: "lpar one", ID: "job/7", Task: "t 1"},
		{Vendor: "arcgis", Instance: "gis", ID: long},
	} {
		for _, kind := range []bridge.EventKind{bridge.KindTransition, bridge.KindProgress, bridge.KindDeadlineMissed} {
			src := bridge.Source(job.Vendor, job.Instance)
			got := bridge.EventID(src, job, kind, 7, 0xdeadbeef, 1<<63, 42)
			want := spec(src, job.Key(), kind, 7, 0xdeadbeef, 1<<63, 42)
			if got != want {
				t.Errorf("EventID(%s, %s) = %s, the specified derivation gives %s", job, kind, got, want)
			}
		}
	}
	// The id of one transition, computed independently (Python's hashlib on
	// the specified bytes): changing it breaks dedupe of events re-detected
	// across an upgrade.
	const pinned = "6650c0bb4e388e423f023ae1c2870cdc"
	if got := bridge.EventID("/jobbridge/tso/prod", bridge.JobRef{Vendor: "tso", Instance: "prod", ID: "a1b2"}, bridge.KindTransition, 1, 0, 2, 0); got != pinned {
		t.Errorf("EventID of the pinned transition is %s, want %s", got, pinned)
	}
}

// TestRawJSONFlagOnlySkipsTheSyntaxCheck: an observation whose poller parsed
// the payload gives the same event as one that did not, and invalid UTF-8 is
// still never carried as raw JSON.
func TestRawJSONFlagOnlySkipsTheSyntaxCheck(t *testing.T) {
	enc := eventTestEncoder(t, bridge.WireStructured, 1<<10)
	mk := func(raw []byte, parsed bool) *bridge.Event {
		c := eventTestChange()
		c.Obs.Raw, c.Obs.RawJSON = raw, parsed
		return eventTestEncode(t, enc, c)
	}
	good := []byte(`{"status":"ASSIGNED","name":"Nightly"}`)
	if a, b := mk(good, true).Msg.Data, mk(good, false).Msg.Data; string(a) != string(b) {
		t.Errorf("RawJSON changed the event:\n%s\n%s", a, b)
	}
	badUTF8 := []byte("{\"status\":\"\xff\"}") // encoding/json accepts this; the event must not
	for _, parsed := range []bool{true, false} {
		ev := mk(badUTF8, parsed)
		d := eventTestData(t, ev)
		if len(d.Raw) != 0 || d.RawText != "{\"status\":\"\uFFFD\"}" {
			t.Errorf("RawJSON=%v: invalid UTF-8 not carried as repaired text: %s", parsed, ev.Msg.Data)
		}
	}
}
