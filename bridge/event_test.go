package bridge_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"math/rand/v2"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jobbridge/jobbridge/bridge"
)

func eventTestEncoder(t *testing.T, mode bridge.WireMode, rawCap int) *bridge.Encoder {
	t.Helper()
	enc, err := bridge.NewEncoder(bridge.EncoderOptions{Subjects: bridge.Subjects{Prefix: "jobs"}, Mode: mode, RawCap: rawCap})
	if err != nil {
		t.Fatalf("NewEncoder: %v", err)
	}
	return enc
}

func eventTestChange() *bridge.Change {
	obs := bridge.Observation{
		Job:        bridge.JobRef{Vendor: "hmc", Instance: "prod", ID: "J-42"},
		State:      bridge.StateFailed,
		Native:     "complete",
		Outcome:    map[string]string{"job-status-code": "500"},
		Times:      map[string]bridge.VendorTime{"ended": {Raw: "1710425366000", Normalized: time.UnixMilli(1710425366000)}},
		Raw:        []byte(`{"status":"complete"}`),
		ObservedAt: time.Date(2025, 3, 14, 16, 9, 26, 5, time.FixedZone("CET", 3600)),
		Via:        bridge.DetectedByPoll,
	}
	return &bridge.Change{
		Kind: bridge.KindTransition, Obs: obs,
		PreviousState: bridge.StateRunning, PreviousNative: "running",
		PreviousFP: 0x1111, Fingerprint: bridge.Fingerprint(&obs), ProgressFP: 0, Seq: 3,
	}
}

func eventTestEncode(t *testing.T, enc *bridge.Encoder, c *bridge.Change) *bridge.Event {
	t.Helper()
	ev, err := enc.Encode(c)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return ev
}

// A negative raw cap leaves the vendor payload out (config rawPayloadCap: 0).
func TestNegativeRawCapOmitsPayload(t *testing.T) {
	enc, err := bridge.NewEncoder(bridge.EncoderOptions{Subjects: bridge.Subjects{Prefix: "jobs"}, RawCap: -1})
	if err != nil {
		t.Fatal(err)
	}
	c := eventTestChange()
	c.Obs.Raw = []byte(`{"status":"x"}`)
	ev := eventTestEncode(t, enc, c)
	for _, k := range []string{`"raw"`, `"rawText"`, `"rawBytes"`} {
		if strings.Contains(string(ev.Msg.Data), k) {
			t.Errorf("payload kept (%s) with a negative cap: %s", k, ev.Msg.Data)
		}
	}
}

func TestNewEncoderRejects(t *testing.T) {
	for name, opts := range map[string]bridge.EncoderOptions{
		"empty prefix":  {},
		"wildcard":      {Subjects: bridge.Subjects{Prefix: "jobs.*"}},
		"unknown mode":  {Subjects: bridge.Subjects{Prefix: "jobs"}, Mode: "batch"},
		"trailing dot":  {Subjects: bridge.Subjects{Prefix: "jobs."}},
		"space in name": {Subjects: bridge.Subjects{Prefix: "my jobs"}},
	} {
		if _, err := bridge.NewEncoder(opts); err == nil {
			t.Errorf("%s: NewEncoder(%+v) accepted", name, opts)
		}
	}
}

// TestEventIDDeterministic: a bridge that re-detects a transition after a
// crash must produce the same id (and so the same Nats-Msg-Id), even though
// it sees the job at another time and perhaps with another raw payload.
func TestEventIDDeterministic(t *testing.T) {
	enc := eventTestEncoder(t, bridge.WireStructured, 1024)
	first := eventTestEncode(t, enc, eventTestChange())
	again := eventTestEncode(t, enc, eventTestChange())
	if first.ID != again.ID || !bytes.Equal(first.Msg.Data, again.Msg.Data) || !reflect.DeepEqual(first.Msg.Header, again.Msg.Header) {
		t.Fatalf("same change encoded twice differs:\n%s\n%s", first.Msg.Data, again.Msg.Data)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(first.ID) {
		t.Errorf("id %q is not 32 hex digits", first.ID)
	}

	later := eventTestChange()
	later.Obs.ObservedAt = later.Obs.ObservedAt.Add(time.Hour)
	later.Obs.Raw = []byte(`{"status":"complete","polledAgain":true}`)
	later.Obs.Via = bridge.DetectedBySTOMP
	later.Labels = map[string]string{"team": "ops"}
	if got := eventTestEncode(t, enc, later).ID; got != first.ID {
		t.Errorf("re-detection at another time got id %s, want %s", got, first.ID)
	}

	ids := map[string]string{first.ID: "base"}
	for name, mutate := range map[string]func(c *bridge.Change){
		"seq":          func(c *bridge.Change) { c.Seq++ },
		"fingerprint":  func(c *bridge.Change) { c.Fingerprint++ },
		"previous fp":  func(c *bridge.Change) { c.PreviousFP++ },
		"progress fp":  func(c *bridge.Change) { c.ProgressFP++ },
		"kind":         func(c *bridge.Change) { c.Kind = bridge.KindStalled },
		"job":          func(c *bridge.Change) { c.Obs.Job.ID = "J-43" },
		"task":         func(c *bridge.Change) { c.Obs.Job.Task = "T1" },
		"vendor":       func(c *bridge.Change) { c.Obs.Job.Vendor = "tso" },
		"instance":     func(c *bridge.Change) { c.Obs.Job.Instance = "test" },
		"dotted job":   func(c *bridge.Change) { c.Obs.Job.ID = "J-42.x" },
		"job with sep": func(c *bridge.Change) { c.Obs.Job.ID = "J-42 " },
	} {
		c := eventTestChange()
		mutate(c)
		id := eventTestEncode(t, enc, c).ID
		if prev, dup := ids[id]; dup {
			t.Errorf("%s: same id as %s", name, prev)
		}
		ids[id] = name
	}

	// EventID on its own: the source takes part, and fields cannot shift
	// into each other.
	job := bridge.JobRef{Vendor: "hmc", Instance: "prod", ID: "J"}
	base := bridge.EventID("/jobbridge/hmc/prod", job, bridge.KindTransition, 1, 2, 3, 4)
	for name, id := range map[string]string{
		"source":        bridge.EventID("/jobbridge/hmc/test", job, bridge.KindTransition, 1, 2, 3, 4),
		"fp swapped":    bridge.EventID("/jobbridge/hmc/prod", job, bridge.KindTransition, 1, 3, 2, 4),
		"seq into prev": bridge.EventID("/jobbridge/hmc/prod", job, bridge.KindTransition, 2, 1, 3, 4),
	} {
		if id == base {
			t.Errorf("%s: same id as the base", name)
		}
	}
	if again := bridge.EventID("/jobbridge/hmc/prod", job, bridge.KindTransition, 1, 2, 3, 4); again != base {
		t.Errorf("EventID is not deterministic: %s then %s", base, again)
	}
}

func TestFormatSequence(t *testing.T) {
	for _, tc := range []struct {
		in   uint64
		want string
	}{
		{0, "00000000000000000000"},
		{1, "00000000000000000001"},
		{10, "00000000000000000010"},
		{1<<63 - 1, "09223372036854775807"},
		{^uint64(0), "18446744073709551615"},
	} {
		if got := bridge.FormatSequence(tc.in); got != tc.want {
			t.Errorf("FormatSequence(%d) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// String order is what CloudEvents consumers compare; it must be numeric
	// order, around every power of ten and at random.
	var nums []uint64
	for p := uint64(1); p < ^uint64(0)/10; p *= 10 {
		nums = append(nums, p-1, p, p+1)
	}
	nums = append(nums, ^uint64(0)-1, ^uint64(0))
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		nums = append(nums, r.Uint64()>>r.UintN(64))
	}
	for i, a := range nums {
		sa := bridge.FormatSequence(a)
		if len(sa) != 20 {
			t.Fatalf("FormatSequence(%d) = %q is not 20 digits", a, sa)
		}
		if back, err := strconv.ParseUint(sa, 10, 64); err != nil || back != a {
			t.Fatalf("FormatSequence(%d) = %q reads back as %d, %v", a, sa, back, err)
		}
		b := nums[(i*7+1)%len(nums)]
		sb := bridge.FormatSequence(b)
		if (a < b) != (sa < sb) || (a == b) != (sa == sb) {
			t.Fatalf("%d vs %d ordered differently as %q vs %q", a, b, sa, sb)
		}
	}
}

// eventTestExtName is the CloudEvents attribute naming rule.
var eventTestExtName = regexp.MustCompile(`^[a-z0-9]{1,20}$`)

func TestStructuredMode(t *testing.T) {
	enc := eventTestEncoder(t, bridge.WireStructured, 1024)
	c := eventTestChange()
	c.Fingerprint, c.ProgressFP = 0xabc, 0x12
	ev := eventTestEncode(t, enc, c)

	h := ev.Msg.Header
	for name, want := range map[string]string{
		"Content-Type":           bridge.StructuredMediaType,
		bridge.HeaderSequence:    "3",
		bridge.HeaderFingerprint: "abc/12",
		bridge.HeaderKind:        "transition",
	} {
		if got := h[name]; len(got) != 1 || got[0] != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	wantSubject := "jobs.hmc.prod.failed.J-42"
	if ev.Subject != wantSubject || ev.Msg.Subject != wantSubject {
		t.Errorf("subject %q / msg subject %q, want %q", ev.Subject, ev.Msg.Subject, wantSubject)
	}
	if ev.Type != "io.jobbridge.job.failed" || !ev.Terminal || ev.Seq != 3 || ev.State != bridge.StateFailed {
		t.Errorf("event fields %+v", ev)
	}

	var body map[string]json.RawMessage
	if err := json.Unmarshal(ev.Msg.Data, &body); err != nil {
		t.Fatalf("body is not a JSON object: %v", err)
	}
	str := func(k string) string {
		var s string
		if err := json.Unmarshal(body[k], &s); err != nil {
			t.Errorf("attribute %s = %s is not a string", k, body[k])
		}
		return s
	}
	for k, want := range map[string]string{
		"specversion":          "1.0",
		"id":                   ev.ID,
		"source":               "/jobbridge/hmc/prod",
		"type":                 "io.jobbridge.job.failed",
		"subject":              "J-42",
		"datacontenttype":      "application/json",
		"dataschema":           bridge.DataSchemaURI,
		"time":                 "2025-03-14T15:09:26.000000005Z",
		bridge.ExtSequence:     "00000000000000000003",
		bridge.ExtVendor:       "hmc",
		bridge.ExtInstance:     "prod",
		bridge.ExtState:        "failed",
		bridge.ExtPartitionKey: "hmc.prod.J-42",
	} {
		if got := str(k); got != want {
			t.Errorf("attribute %s = %q, want %q", k, got, want)
		}
	}
	for k := range body {
		if !eventTestExtName.MatchString(k) {
			t.Errorf("attribute name %q breaks the CloudEvents naming rule", k)
		}
	}
	var data bridge.EventData
	if err := json.Unmarshal(body["data"], &data); err != nil {
		t.Fatalf("data is not inline JSON (%s): %v", body["data"], err)
	}
	if data.Sequence != 3 || data.State != bridge.StateFailed || data.PreviousState != bridge.StateRunning ||
		data.Native.Status != "complete" || data.Native.PreviousStatus != "running" || !data.Terminal ||
		data.DetectedBy != bridge.DetectedByPoll || !data.DetectedAt.Equal(c.Obs.ObservedAt) ||
		data.Outcome["job-status-code"] != "500" || string(data.Raw) != `{"status":"complete"}` {
		t.Errorf("data %+v", data)
	}
}

func TestTaskAndKindSubjects(t *testing.T) {
	enc := eventTestEncoder(t, bridge.WireStructured, 0)
	c := eventTestChange()
	c.Kind = bridge.KindProgress
	c.Obs.State = bridge.StateRunning
	c.Obs.Job.Task = "t 1"
	ev := eventTestEncode(t, enc, c)
	if ev.Subject != "jobs.hmc.prod.progress.J-42.t_201" || ev.Type != "io.jobbridge.task.progress" || ev.Terminal {
		t.Errorf("task progress: subject %q type %q terminal %v", ev.Subject, ev.Type, ev.Terminal)
	}
	var body struct {
		Subject string `json:"subject"`
		Data    bridge.EventData
	}
	if err := json.Unmarshal(ev.Msg.Data, &body); err != nil {
		t.Fatal(err)
	}
	if body.Subject != "J-42/t 1" || body.Data.Task != "t 1" || body.Data.Kind != bridge.KindProgress {
		t.Errorf("subject %q task %q kind %q", body.Subject, body.Data.Task, body.Data.Kind)
	}
}

func TestBinaryModePercentEncodesHeaders(t *testing.T) {
	enc := eventTestEncoder(t, bridge.WireBinary, 1024)
	c := eventTestChange()
	id := `say "hi" 100% ü/€`
	c.Obs.Job.ID = id
	c.Obs.Job.Instance = "ost-europa%ü\"q"
	ev := eventTestEncode(t, enc, c)
	h := ev.Msg.Header

	// A message with ce- headers and a Content-Type of
	// application/cloudevents would be read as structured mode.
	if ct := h.Get("Content-Type"); strings.HasPrefix(ct, "application/cloudevents") {
		t.Errorf("binary message has Content-Type %q", ct)
	}
	if got := h["ce-subject"]; len(got) != 1 || got[0] != "say%20%22hi%22%20100%25%20%C3%BC/%E2%82%AC" {
		t.Errorf("ce-subject = %q", got)
	}
	want := map[string]string{
		"ce-specversion":     "1.0",
		"ce-id":              ev.ID,
		"ce-source":          bridge.Source("hmc", "ost-europa%ü\"q"),
		"ce-type":            "io.jobbridge.job.failed",
		"ce-subject":         id,
		"ce-time":            "2025-03-14T15:09:26.000000005Z",
		"ce-dataschema":      bridge.DataSchemaURI,
		"ce-datacontenttype": "application/json",
		"ce-sequence":        "00000000000000000003",
		"ce-jobvendor":       "hmc",
		"ce-jobinstance":     "ost-europa%ü\"q",
		"ce-jobstate":        "failed",
		"ce-partitionkey":    c.Obs.Job.Key(),
	}
	var ceNames []string
	for k, vs := range h {
		if !strings.HasPrefix(k, "ce-") {
			continue
		}
		ceNames = append(ceNames, k)
		if len(vs) != 1 {
			t.Errorf("header %s has %d values", k, len(vs))
			continue
		}
		for i := 0; i < len(vs[0]); i++ {
			if b := vs[0][i]; b < 0x21 || b > 0x7e || b == '"' {
				t.Errorf("header %s = %q: byte %q at %d is not encoded", k, vs[0], b, i)
			}
		}
		got, err := bridge.PercentDecode(vs[0])
		if err != nil {
			t.Errorf("header %s: %v", k, err)
		} else if got != want[k] {
			t.Errorf("header %s decodes to %q, want %q", k, got, want[k])
		}
	}
	if got := slices.Sorted(maps.Keys(want)); !slices.Equal(slices.Sorted(slices.Values(ceNames)), got) {
		t.Errorf("ce- headers %v, want %v", slices.Sorted(slices.Values(ceNames)), got)
	}
	if h.Get(bridge.HeaderSequence) != "3" || h.Get(bridge.HeaderKind) != "transition" {
		t.Errorf("bridge headers missing in binary mode: %v", h)
	}

	var data bridge.EventData
	if err := json.Unmarshal(ev.Msg.Data, &data); err != nil {
		t.Fatalf("binary body is not the data JSON: %v\n%s", err, ev.Msg.Data)
	}
	if data.Job != id || data.Instance != "ost-europa%ü\"q" || data.Sequence != 3 {
		t.Errorf("binary data %+v", data)
	}
}

func TestPercentDecode(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                 "plain",
		"a%20b":                 "a b",
		"%22q%22":               `"q"`,
		"100%25":                "100%",
		"%C3%BC":                "ü",
		"a+b":                   "a+b", // not form encoding
		"%F0%9F%98%80":          "😀",
		"%E2%82%AC%2F%E2%82%AC": "€/€",
	} {
		if got, err := bridge.PercentDecode(in); err != nil || got != want {
			t.Errorf("PercentDecode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"%", "%4", "%zz", "%C0%A0", "%FF", "%C3"} {
		if got, err := bridge.PercentDecode(bad); err == nil {
			t.Errorf("PercentDecode(%q) = %q; want an error", bad, got)
		}
	}
}

func eventTestData(t *testing.T, ev *bridge.Event) bridge.EventData {
	t.Helper()
	var body struct{ Data bridge.EventData }
	if err := json.Unmarshal(ev.Msg.Data, &body); err != nil {
		t.Fatalf("%v\n%s", err, ev.Msg.Data)
	}
	return body.Data
}

func TestRawCap(t *testing.T) {
	const capBytes = 16
	enc := eventTestEncoder(t, bridge.WireStructured, capBytes)
	for _, tc := range []struct {
		name      string
		raw       string
		json      bool
		text      string
		truncated bool
	}{
		{"json at cap", `{"s":"complete"}`, true, "", false},
		{"json over cap", `{"s":"completed"}`, false, `{"s":"completed"`, true},
		{"text under cap", `status=ok`, false, `status=ok`, false},
		{"text at cap", `0123456789abcdef`, false, `0123456789abcdef`, false},
		{"text over cap", `0123456789abcdefXYZ`, false, `0123456789abcdef`, true},
		{"cut inside €", `0123456789abcd€`, false, `0123456789abcd`, true},
		{"cut inside 😀", `0123456789abc😀`, false, `0123456789abc`, true},
		{"rune ends at cap", `0123456789abc€z`, false, `0123456789abc€`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := eventTestChange()
			c.Obs.Raw = []byte(tc.raw)
			d := eventTestData(t, eventTestEncode(t, enc, c))
			if d.RawBytes != len(tc.raw) {
				t.Errorf("rawBytes %d, want %d", d.RawBytes, len(tc.raw))
			}
			if tc.json {
				if string(d.Raw) != tc.raw || d.RawText != "" || d.RawTruncated {
					t.Errorf("raw %s rawText %q truncated %v; want the JSON inline", d.Raw, d.RawText, d.RawTruncated)
				}
				return
			}
			if d.Raw != nil || d.RawText != tc.text || d.RawTruncated != tc.truncated {
				t.Errorf("raw %s rawText %q truncated %v; want rawText %q truncated %v", d.Raw, d.RawText, d.RawTruncated, tc.text, tc.truncated)
			}
			if len(d.RawText) > capBytes || !utf8.ValidString(d.RawText) {
				t.Errorf("rawText %q: %d bytes, valid UTF-8 %v", d.RawText, len(d.RawText), utf8.ValidString(d.RawText))
			}
		})
	}
	for name, enc := range map[string]*bridge.Encoder{
		"cap 0":     eventTestEncoder(t, bridge.WireStructured, 0),
		"empty raw": enc,
	} {
		c := eventTestChange()
		if name == "empty raw" {
			c.Obs.Raw = nil
		}
		d := eventTestData(t, eventTestEncode(t, enc, c))
		if d.Raw != nil || d.RawText != "" || d.RawTruncated || d.RawBytes != 0 {
			t.Errorf("%s: raw %s rawText %q truncated %v bytes %d; want none", name, d.Raw, d.RawText, d.RawTruncated, d.RawBytes)
		}
	}
}

func TestFingerprint(t *testing.T) {
	base := func() bridge.Observation {
		return bridge.Observation{
			Job: bridge.JobRef{Vendor: "hmc", Instance: "prod", ID: "J"}, State: bridge.StateRunning,
			Native: "running", SubState: "", RunID: "r1",
			Outcome: map[string]string{"code": "0", "reason": ""},
		}
	}
	b := base()
	want := bridge.Fingerprint(&b)
	for name, mutate := range map[string]func(o *bridge.Observation){
		"state":           func(o *bridge.Observation) { o.State = bridge.StateFailed },
		"native":          func(o *bridge.Observation) { o.Native = "Running" },
		"substate":        func(o *bridge.Observation) { o.SubState = "paused" },
		"run id":          func(o *bridge.Observation) { o.RunID = "r2" },
		"outcome value":   func(o *bridge.Observation) { o.Outcome["code"] = "1" },
		"outcome key":     func(o *bridge.Observation) { o.Outcome = map[string]string{"code2": "0", "reason": ""} },
		"outcome added":   func(o *bridge.Observation) { o.Outcome["extra"] = "" },
		"outcome removed": func(o *bridge.Observation) { delete(o.Outcome, "reason") },
		// The fields are separated: text cannot move from one to the next.
		"native into substate": func(o *bridge.Observation) { o.Native, o.SubState = "runnin", "g" },
		"run id into outcome": func(o *bridge.Observation) {
			o.RunID = ""
			o.Outcome = map[string]string{"r1": "", "code": "0", "reason": ""}
		},
	} {
		o := base()
		mutate(&o)
		if got := bridge.Fingerprint(&o); got == want {
			t.Errorf("%s: fingerprint unchanged", name)
		}
	}
	for name, mutate := range map[string]func(o *bridge.Observation){
		"times":       func(o *bridge.Observation) { o.Times = map[string]bridge.VendorTime{"t": {Raw: "x"}} },
		"progress":    func(o *bridge.Observation) { o.Progress = &bridge.Progress{Message: "half"} },
		"raw":         func(o *bridge.Observation) { o.Raw = []byte("{}") },
		"observed at": func(o *bridge.Observation) { o.ObservedAt = time.Now() },
		"via":         func(o *bridge.Observation) { o.Via = bridge.DetectedBySSE },
	} {
		o := base()
		mutate(&o)
		if got := bridge.Fingerprint(&o); got != want {
			t.Errorf("%s changed the fingerprint, though it is not state", name)
		}
	}

	// Map order: build the same outcome in many insertion orders.
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h", "job-status-code", "exit_code"}
	r := rand.New(rand.NewPCG(3, 4))
	var first uint64
	for i := range 50 {
		r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		o := base()
		o.Outcome = map[string]string{}
		for _, k := range keys {
			o.Outcome[k] = "v-" + k
		}
		fp := bridge.Fingerprint(&o)
		if i == 0 {
			first = fp
		} else if fp != first {
			t.Fatalf("fingerprint depends on map order: %x vs %x", fp, first)
		}
	}
}

func TestProgressFingerprint(t *testing.T) {
	if got := bridge.ProgressFingerprint(nil); got != 0 {
		t.Errorf("nil progress = %x, want 0", got)
	}
	p := func(v float64) *float64 { return &v }
	n := func(v int) *int { return &v }
	seen := map[uint64]string{}
	for name, pr := range map[string]*bridge.Progress{
		"empty":      {},
		"percent 10": {Percent: p(10)},
		"percent 11": {Percent: p(11)},
		"done 1":     {StepsDone: n(1)},
		"done 2":     {StepsDone: n(2)},
		"total 2":    {StepsTotal: n(2)},
		"message":    {Message: "copying"},
		"all":        {Percent: p(10), StepsDone: n(1), StepsTotal: n(2), Message: "copying"},
	} {
		fp := bridge.ProgressFingerprint(pr)
		if fp == 0 {
			t.Errorf("%s: 0 is reserved for no progress", name)
		}
		if prev, dup := seen[fp]; dup {
			t.Errorf("%s and %s share fingerprint %x", name, prev, fp)
		}
		seen[fp] = name
	}
}
