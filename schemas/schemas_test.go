package schemas_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/schemas"
)

func newValidator(t *testing.T) *schemas.Validator {
	t.Helper()
	v, err := schemas.NewValidator()
	if err != nil {
		t.Fatalf("NewValidator: %v", err)
	}
	return v
}

func newEncoder(t *testing.T, mode bridge.WireMode, rawCap int) *bridge.Encoder {
	t.Helper()
	enc, err := bridge.NewEncoder(bridge.EncoderOptions{Subjects: bridge.Subjects{Prefix: "jobs"}, Mode: mode, RawCap: rawCap})
	if err != nil {
		t.Fatalf("NewEncoder: %v", err)
	}
	return enc
}

func ptr[T any](v T) *T { return &v }

var observedAt = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.FixedZone("CET", 3600))

// baseChange is a full transition of an HMC job: every optional part set.
func baseChange() *bridge.Change {
	obs := bridge.Observation{
		Job:      bridge.JobRef{Vendor: "hmc", Instance: "prod", ID: "J-42"},
		State:    bridge.StateFailed,
		Native:   "complete",
		SubState: "cancel-pending",
		RunID:    "run-7",
		Outcome:  map[string]string{"job-status-code": "500", "job-reason-code": "13"},
		Times: map[string]bridge.VendorTime{
			"started": {Raw: "1710425366000", Normalized: time.UnixMilli(1710425366000)},
			"ended":   {Raw: "sometime on Tuesday"}, // unparsable: no normalized
		},
		Raw:        []byte(`{"status":"complete","job-status-code":500}`),
		ObservedAt: observedAt,
		Via:        bridge.DetectedBySTOMP,
	}
	return &bridge.Change{
		Kind: bridge.KindTransition, Obs: obs,
		PreviousState: bridge.StateRunning, PreviousNative: "running",
		PreviousFP: 7, Fingerprint: bridge.Fingerprint(&obs), Seq: 3,
		Labels: map[string]string{"team": "ops", "ticket": "CHG-1"},
	}
}

// encodeCases are changes of every shape the bridge emits.
func encodeCases() map[string]func(c *bridge.Change) {
	return map[string]func(c *bridge.Change){
		"transition": func(c *bridge.Change) {},
		"first observation": func(c *bridge.Change) {
			c.PreviousState, c.PreviousNative, c.PreviousFP = "", "", 0
			c.Obs.State, c.Obs.Native, c.Obs.SubState, c.Obs.RunID = bridge.StatePending, "queued", "", ""
			c.Obs.Outcome, c.Obs.Times, c.Obs.Raw, c.Labels = nil, nil, nil, nil
			c.Obs.Via = "" // the encoder fills in poll
			c.Seq = 1
		},
		"succeeded": func(c *bridge.Change) { c.Obs.State = bridge.StateSucceeded },
		"canceled":  func(c *bridge.Change) { c.Obs.State = bridge.StateCanceled },
		"unknown":   func(c *bridge.Change) { c.Obs.State = bridge.StateUnknown },
		"progress": func(c *bridge.Change) {
			c.Kind = bridge.KindProgress
			c.Obs.State, c.PreviousState = bridge.StateRunning, bridge.StateRunning
			c.Obs.Progress = &bridge.Progress{Percent: ptr(37.5), StepsDone: ptr(3), StepsTotal: ptr(8), Message: "Copying features"}
			c.ProgressFP = bridge.ProgressFingerprint(c.Obs.Progress)
		},
		"progress percent only": func(c *bridge.Change) {
			c.Kind = bridge.KindProgress
			c.Obs.State = bridge.StateRunning
			c.Obs.Progress = &bridge.Progress{Percent: ptr(0.0)}
		},
		"vanished": func(c *bridge.Change) {
			c.Kind = bridge.KindVanished
			c.Obs.State, c.Obs.Native, c.Obs.Raw = bridge.StateUnknown, "", nil
			c.Obs.Via = bridge.DetectedByPoll
		},
		"stalled": func(c *bridge.Change) {
			c.Kind = bridge.KindStalled
			c.Obs.State = bridge.StateRunning
			c.StalledSince = observedAt.Add(-3 * time.Hour)
		},
		"deadline missed": func(c *bridge.Change) {
			c.Kind = bridge.KindDeadlineMissed
			c.Obs.State = bridge.StatePending
			c.Deadline = observedAt.Add(-time.Minute)
		},
		"task transition": func(c *bridge.Change) {
			c.Obs.Job.Task = "task 1/ü"
			c.Obs.State = bridge.StateSucceeded
		},
		"task progress": func(c *bridge.Change) {
			c.Kind = bridge.KindProgress
			c.Obs.Job.Task = "t-9"
			c.Obs.State = bridge.StateRunning
			c.Obs.Progress = &bridge.Progress{StepsDone: ptr(0), StepsTotal: ptr(4)}
		},
		"sse": func(c *bridge.Change) { c.Obs.Via = bridge.DetectedBySSE },
		"hostile ids": func(c *bridge.Change) {
			c.Obs.Job = bridge.JobRef{Vendor: "arcgis", Instance: "east.1", ID: `a.b *> "q" 100% $SYS/ü_€`, Task: "x.y"}
		},
		"raw array":      func(c *bridge.Change) { c.Obs.Raw = []byte(`[1, "two", {"3": null}]`) },
		"raw json null":  func(c *bridge.Change) { c.Obs.Raw = []byte(`null`) },
		"raw json bool":  func(c *bridge.Change) { c.Obs.Raw = []byte(` true `) },
		"raw not json":   func(c *bridge.Change) { c.Obs.Raw = []byte(`<job><status>complete</status></job>`) },
		"raw over cap":   func(c *bridge.Change) { c.Obs.Raw = []byte(`{"log":"` + strings.Repeat("x", 300) + `"}`) },
		"max sequence":   func(c *bridge.Change) { c.Seq = ^uint64(0) },
		"fractional now": func(c *bridge.Change) { c.Obs.ObservedAt = time.Date(2024, 2, 29, 23, 59, 59, 1, time.UTC) },
	}
}

// envelopeFromBinary rebuilds the structured event a binary-mode message
// stands for, so that the headers are held to the same schema as a body.
func envelopeFromBinary(t *testing.T, ev *bridge.Event) []byte {
	t.Helper()
	env := map[string]any{}
	for k, vs := range ev.Msg.Header {
		name, ok := strings.CutPrefix(k, "ce-")
		if !ok {
			continue
		}
		if len(vs) != 1 {
			t.Fatalf("header %s has %d values", k, len(vs))
		}
		v, err := bridge.PercentDecode(vs[0])
		if err != nil {
			t.Fatalf("header %s: %v", k, err)
		}
		env[name] = v
	}
	env["data"] = json.RawMessage(ev.Msg.Data)
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEncodedEventsValidate(t *testing.T) {
	v := newValidator(t)
	structured := newEncoder(t, bridge.WireStructured, 256)
	binary := newEncoder(t, bridge.WireBinary, 256)
	for name, mutate := range encodeCases() {
		t.Run(name, func(t *testing.T) {
			c := baseChange()
			mutate(c)
			ev, err := structured.Encode(c)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if err := v.ValidateEvent(ev.Msg.Data); err != nil {
				t.Fatalf("structured event does not validate: %v\n%s", err, ev.Msg.Data)
			}
			var env struct{ Data json.RawMessage }
			if err := json.Unmarshal(ev.Msg.Data, &env); err != nil {
				t.Fatal(err)
			}
			if err := v.ValidateData(env.Data); err != nil {
				t.Fatalf("data member does not validate: %v\n%s", err, env.Data)
			}

			bev, err := binary.Encode(c)
			if err != nil {
				t.Fatalf("Encode binary: %v", err)
			}
			if err := v.ValidateData(bev.Msg.Data); err != nil {
				t.Fatalf("binary body does not validate: %v\n%s", err, bev.Msg.Data)
			}
			if err := v.ValidateEvent(envelopeFromBinary(t, bev)); err != nil {
				t.Fatalf("binary headers do not make a valid event: %v\n%v", err, bev.Msg.Header)
			}
		})
	}
}

// TestEveryTypeValidates encodes one event of every type the bridge declares,
// so a type added to bridge without a schema update fails here.
func TestEveryTypeValidates(t *testing.T) {
	v := newValidator(t)
	enc := newEncoder(t, bridge.WireStructured, 64)
	var seen []string
	for _, task := range []bool{false, true} {
		for _, k := range []bridge.EventKind{bridge.KindTransition, bridge.KindProgress, bridge.KindVanished, bridge.KindStalled, bridge.KindDeadlineMissed} {
			states := bridge.States
			if k != bridge.KindTransition {
				states = []bridge.State{bridge.StateRunning}
			}
			for _, s := range states {
				c := baseChange()
				c.Kind, c.Obs.State = k, s
				if task {
					c.Obs.Job.Task = "T1"
				}
				c.StalledSince = observedAt.Add(-time.Hour)
				c.Deadline = observedAt.Add(-time.Hour)
				ev, err := enc.Encode(c)
				if err != nil {
					t.Fatalf("Encode %s/%s: %v", k, s, err)
				}
				if err := v.ValidateEvent(ev.Msg.Data); err != nil {
					t.Errorf("%s: %v", ev.Type, err)
				}
				seen = append(seen, ev.Type)
			}
		}
	}
	want := bridge.EventTypes()
	slices.Sort(seen)
	slices.Sort(want)
	if !slices.Equal(seen, want) {
		t.Errorf("encoded types %v\nwant bridge.EventTypes() %v", seen, want)
	}
}

func TestTruncatedRawAtMultiByteCut(t *testing.T) {
	v := newValidator(t)
	// "€" is 3 bytes and "😀" 4: every cap below cuts through one of them
	// at some offset.
	raw := []byte(strings.Repeat("a€😀", 20))
	for capBytes := 1; capBytes <= 16; capBytes++ {
		enc := newEncoder(t, bridge.WireStructured, capBytes)
		c := baseChange()
		c.Obs.Raw = raw
		ev, err := enc.Encode(c)
		if err != nil {
			t.Fatalf("cap %d: %v", capBytes, err)
		}
		if err := v.ValidateEvent(ev.Msg.Data); err != nil {
			t.Fatalf("cap %d: %v\n%s", capBytes, err, ev.Msg.Data)
		}
		var env struct{ Data bridge.EventData }
		if err := json.Unmarshal(ev.Msg.Data, &env); err != nil {
			t.Fatal(err)
		}
		d := env.Data
		if !d.RawTruncated || d.RawBytes != len(raw) || d.Raw != nil {
			t.Fatalf("cap %d: truncated=%v rawBytes=%d raw=%s", capBytes, d.RawTruncated, d.RawBytes, d.Raw)
		}
		if len(d.RawText) > capBytes || len(d.RawText) < capBytes-3 {
			t.Errorf("cap %d: rawText is %d bytes, want the longest whole-rune prefix", capBytes, len(d.RawText))
		}
		if !utf8.ValidString(d.RawText) || !strings.HasPrefix(string(raw), d.RawText) {
			t.Errorf("cap %d: rawText %q is not a valid prefix of the payload", capBytes, d.RawText)
		}
	}
}

func TestRawCapZeroOmitsPayload(t *testing.T) {
	v := newValidator(t)
	ev, err := newEncoder(t, bridge.WireStructured, 0).Encode(baseChange())
	if err != nil {
		t.Fatal(err)
	}
	if err := v.ValidateEvent(ev.Msg.Data); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(ev.Msg.Data), `"raw`) {
		t.Errorf("cap 0 must carry no raw payload: %s", ev.Msg.Data)
	}
}

// validEvent is a structured event as a generic map, for breaking.
func validEvent(t *testing.T) map[string]any {
	t.Helper()
	ev, err := newEncoder(t, bridge.WireStructured, 256).Encode(baseChange())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(ev.Msg.Data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func wantProblemAt(t *testing.T, err error, pointer string) {
	t.Helper()
	if err == nil {
		t.Fatalf("validation passed; want a problem at %q", pointer)
	}
	var ve *schemas.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %T (%v) is not a *schemas.ValidationError", err, err)
	}
	for _, p := range ve.Problems {
		if p.Pointer == pointer {
			if !strings.Contains(err.Error(), pointer) {
				t.Errorf("message %q does not name %q", err, pointer)
			}
			return
		}
	}
	t.Fatalf("no problem at %q in: %v", pointer, err)
}

func TestBrokenEventsFail(t *testing.T) {
	v := newValidator(t)
	data := func(m map[string]any) map[string]any { return m["data"].(map[string]any) }
	cases := []struct {
		name    string
		break_  func(m map[string]any)
		pointer string
	}{
		{"missing id", func(m map[string]any) { delete(m, "id") }, "/id"},
		{"empty id", func(m map[string]any) { m["id"] = "" }, "/id"},
		{"missing time", func(m map[string]any) { delete(m, "time") }, "/time"},
		{"bad type", func(m map[string]any) { m["type"] = "io.jobbridge.job.exploded" }, "/type"},
		{"type without prefix", func(m map[string]any) { m["type"] = "failed" }, "/type"},
		{"specversion", func(m map[string]any) { m["specversion"] = "0.3" }, "/specversion"},
		{"uppercase extension", func(m map[string]any) { m["jobVendor"] = m["jobvendor"] }, "/jobVendor"},
		{"renamed extension", func(m map[string]any) { m["Sequence"] = m["sequence"]; delete(m, "sequence") }, "/sequence"},
		{"extension name too long", func(m map[string]any) { m["jobinstancenamelong21"] = "x" }, "/jobinstancenamelong21"},
		{"data_base64", func(m map[string]any) { m["data_base64"] = "e30=" }, "/data_base64"},
		{"sequence not padded", func(m map[string]any) { m["sequence"] = "3" }, "/sequence"},
		{"sequence as number", func(m map[string]any) { m["sequence"] = 3 }, "/sequence"},
		{"sequence zero", func(m map[string]any) { m["sequence"] = "00000000000000000000"; data(m)["sequence"] = 0 }, "/sequence"},
		{"unknown jobstate", func(m map[string]any) { m["jobstate"] = "done" }, "/jobstate"},
		{"unknown state", func(m map[string]any) { data(m)["state"] = "done" }, "/data/state"},
		{"unknown previous state", func(m map[string]any) { data(m)["previousState"] = "FAILED" }, "/data/previousState"},
		{"empty kind", func(m map[string]any) { data(m)["kind"] = "" }, "/data/kind"},
		{"detectedBy", func(m map[string]any) { data(m)["detectedBy"] = "push" }, "/data/detectedBy"},
		{"time not RFC 3339", func(m map[string]any) { m["time"] = "2025-03-14 15:09:26" }, "/time"},
		{"normalized time", func(m map[string]any) {
			data(m)["times"].(map[string]any)["started"].(map[string]any)["normalized"] = "yesterday"
		}, "/data/times/started/normalized"},
		{"outcome not string", func(m map[string]any) { data(m)["outcome"].(map[string]any)["job-status-code"] = 500 }, "/data/outcome/job-status-code"},
		{"unknown data member", func(m map[string]any) { data(m)["exitCode"] = 1 }, "/data/exitCode"},
		{"raw and rawText", func(m map[string]any) { data(m)["rawText"] = "x" }, "/data"},
		{"rawBytes missing", func(m map[string]any) { delete(data(m), "rawBytes") }, "/data/rawBytes"},
		{"terminal disagrees", func(m map[string]any) { data(m)["terminal"] = false }, "/data/terminal"},
		{"datacontenttype", func(m map[string]any) { m["datacontenttype"] = "text/plain" }, "/datacontenttype"},
		{"dataschema", func(m map[string]any) { m["dataschema"] = "urn:jobbridge:schema:job-event:v2" }, "/dataschema"},
		{"control char in subject", func(m map[string]any) { m["subject"] = "J-42\n"; data(m)["job"] = "J-42\n" }, "/subject"},
		{"C1 control in vendor", func(m map[string]any) { m["jobvendor"] = "hmc\u0085"; data(m)["vendor"] = "hmc\u0085" }, "/jobvendor"},
		{"partitionkey not escaped", func(m map[string]any) { m["partitionkey"] = "hmc.prod.a b" }, "/partitionkey"},
		{"source", func(m map[string]any) { m["source"] = "hmc" }, "/source"},
		{"type says task, data has none", func(m map[string]any) { m["type"] = "io.jobbridge.task.failed" }, "/data/task"},
		{"type says job, data has a task", func(m map[string]any) { data(m)["task"] = "T"; m["subject"] = "J-42/T" }, "/data"},
		{"type and state disagree", func(m map[string]any) { m["type"] = "io.jobbridge.job.succeeded" }, "/jobstate"},
		{"type and kind disagree", func(m map[string]any) { m["type"] = "io.jobbridge.job.progress" }, "/data/kind"},
		{"stalled without stalledSince", func(m map[string]any) {
			m["type"] = "io.jobbridge.job.stalled"
			data(m)["kind"] = "stalled"
		}, "/data/stalledSince"},
		{"deadline_missed without deadline", func(m map[string]any) {
			m["type"] = "io.jobbridge.job.deadline_missed"
			data(m)["kind"] = "deadline_missed"
		}, "/data/deadline"},
		// Rules between envelope and data that no schema keyword can state.
		{"sequence differs from data", func(m map[string]any) { data(m)["sequence"] = 4 }, "/sequence"},
		{"jobstate differs from data", func(m map[string]any) {
			m["jobstate"] = "running"
			m["type"] = "io.jobbridge.job.progress"
			data(m)["kind"] = "progress"
		}, "/jobstate"},
		{"jobvendor differs from data", func(m map[string]any) { m["jobvendor"] = "tso" }, "/jobvendor"},
		{"jobinstance differs from data", func(m map[string]any) { m["jobinstance"] = "test" }, "/jobinstance"},
		{"time differs from detectedAt", func(m map[string]any) { m["time"] = "2025-03-14T14:09:27Z" }, "/time"},
		{"subject differs from job", func(m map[string]any) { m["subject"] = "J-43" }, "/subject"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := validEvent(t)
			tc.break_(m)
			body, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			wantProblemAt(t, v.ValidateEvent(body), tc.pointer)
		})
	}
}

// TestSameInstantDifferentOffset: time and data.detectedAt are compared as
// instants, not strings.
func TestSameInstantDifferentOffset(t *testing.T) {
	v := newValidator(t)
	m := validEvent(t)
	ts, err := time.Parse(time.RFC3339Nano, m["time"].(string))
	if err != nil {
		t.Fatal(err)
	}
	m["time"] = ts.In(time.FixedZone("", -7*3600)).Format(time.RFC3339Nano)
	body, _ := json.Marshal(m)
	if err := v.ValidateEvent(body); err != nil {
		t.Fatalf("same instant with another offset: %v", err)
	}
}

func TestBrokenBodiesFail(t *testing.T) {
	v := newValidator(t)
	m := validEvent(t)
	good, _ := json.Marshal(m)
	for name, body := range map[string][]byte{
		"empty":          nil,
		"not JSON":       []byte("status=complete"),
		"trailing data":  append(append([]byte{}, good...), []byte(` {}`)...),
		"array":          []byte(`[]`),
		"invalid UTF-8":  []byte(strings.Replace(string(good), `"J-42"`, "\"J-4\xff\"", 2)),
		"truncated body": good[:len(good)/2],
	} {
		t.Run(name, func(t *testing.T) {
			err := v.ValidateEvent(body)
			var ve *schemas.ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("got %v, want a *ValidationError", err)
			}
		})
	}
}

func TestBrokenDataFails(t *testing.T) {
	v := newValidator(t)
	for _, tc := range []struct{ name, body, pointer string }{
		{"sequence zero", `{"vendor":"hmc","instance":"p","job":"j","kind":"transition","state":"running","terminal":false,"native":{"status":"x"},"detectedAt":"2025-01-01T00:00:00Z","detectedBy":"poll","sequence":0}`, "/sequence"},
		{"sequence fraction", `{"vendor":"hmc","instance":"p","job":"j","kind":"transition","state":"running","terminal":false,"native":{"status":"x"},"detectedAt":"2025-01-01T00:00:00Z","detectedBy":"poll","sequence":1.5}`, "/sequence"},
		{"missing vendor", `{"instance":"p","job":"j","kind":"transition","state":"running","terminal":false,"native":{"status":"x"},"detectedAt":"2025-01-01T00:00:00Z","detectedBy":"poll","sequence":1}`, "/vendor"},
		{"missing native status", `{"vendor":"hmc","instance":"p","job":"j","kind":"transition","state":"running","terminal":false,"native":{},"detectedAt":"2025-01-01T00:00:00Z","detectedBy":"poll","sequence":1}`, "/native/status"},
		{"negative steps", `{"vendor":"hmc","instance":"p","job":"j","kind":"progress","state":"running","terminal":false,"native":{"status":"x"},"progress":{"stepsDone":-1},"detectedAt":"2025-01-01T00:00:00Z","detectedBy":"poll","sequence":1}`, "/progress/stepsDone"},
		{"rawTruncated false", `{"vendor":"hmc","instance":"p","job":"j","kind":"transition","state":"running","terminal":false,"native":{"status":"x"},"detectedAt":"2025-01-01T00:00:00Z","detectedBy":"poll","sequence":1,"rawTruncated":false,"rawBytes":3}`, "/rawTruncated"},
		{"time vendor missing", `{"vendor":"hmc","instance":"p","job":"j","kind":"transition","state":"running","terminal":false,"native":{"status":"x"},"times":{"a/b~c":{}},"detectedAt":"2025-01-01T00:00:00Z","detectedBy":"poll","sequence":1}`, "/times/a~1b~0c/vendor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantProblemAt(t, v.ValidateData([]byte(tc.body)), tc.pointer)
		})
	}
}

// schemaDoc reads an embedded schema as a generic value.
func schemaDoc(t *testing.T, name string) map[string]any {
	t.Helper()
	b, err := fs.ReadFile(schemas.Files(), name)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

func get(t *testing.T, v any, path ...string) any {
	t.Helper()
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%v: not an object at %q", path, p)
		}
		v = m[p]
	}
	return v
}

func strings_(t *testing.T, v any) []string {
	t.Helper()
	arr, ok := v.([]any)
	if !ok {
		t.Fatalf("%v is not an array", v)
	}
	out := make([]string, len(arr))
	for i, x := range arr {
		out[i] = x.(string)
	}
	return out
}

func TestTypeEnumIsEventTypes(t *testing.T) {
	got := strings_(t, get(t, schemaDoc(t, schemas.EventSchemaFile), "properties", "type", "enum"))
	want := bridge.EventTypes()
	if len(got) != len(want) {
		t.Fatalf("schema lists %d types, bridge.EventTypes() %d", len(got), len(want))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("type enum %v\nwant %v", got, want)
	}
}

func TestSchemaMatchesBridgeConstants(t *testing.T) {
	ev := schemaDoc(t, schemas.EventSchemaFile)
	data := schemaDoc(t, schemas.DataSchemaFile)
	if schemas.DataSchemaID != bridge.DataSchemaURI || get(t, data, "$id") != bridge.DataSchemaURI {
		t.Errorf("data schema $id %v, DataSchemaID %s, bridge.DataSchemaURI %s", get(t, data, "$id"), schemas.DataSchemaID, bridge.DataSchemaURI)
	}
	if get(t, ev, "$id") != schemas.EventSchemaID {
		t.Errorf("envelope $id %v", get(t, ev, "$id"))
	}
	if got := get(t, ev, "properties", "dataschema", "const"); got != bridge.DataSchemaURI {
		t.Errorf("dataschema const %v", got)
	}
	if got := get(t, ev, "properties", "datacontenttype", "const"); got != bridge.DataMediaType {
		t.Errorf("datacontenttype const %v", got)
	}
	if got := get(t, ev, "properties", "specversion", "const"); got != bridge.SpecVersion {
		t.Errorf("specversion const %v", got)
	}
	req := strings_(t, get(t, ev, "required"))
	for _, ext := range []string{bridge.ExtSequence, bridge.ExtVendor, bridge.ExtInstance, bridge.ExtState, bridge.ExtPartitionKey} {
		if !slices.Contains(req, ext) {
			t.Errorf("extension %s is not required by the envelope schema", ext)
		}
	}
	var states []string
	for _, s := range bridge.States {
		states = append(states, string(s))
	}
	if got := strings_(t, get(t, data, "$defs", "state", "enum")); !slices.Equal(got, states) {
		t.Errorf("state enum %v, want %v", got, states)
	}
	kinds := []string{string(bridge.KindTransition), string(bridge.KindProgress), string(bridge.KindVanished), string(bridge.KindStalled), string(bridge.KindDeadlineMissed)}
	if got := strings_(t, get(t, data, "properties", "kind", "enum")); !slices.Equal(got, kinds) {
		t.Errorf("kind enum %v, want %v", got, kinds)
	}
	by := []string{string(bridge.DetectedByPoll), string(bridge.DetectedBySTOMP), string(bridge.DetectedBySSE)}
	if got := strings_(t, get(t, data, "properties", "detectedBy", "enum")); !slices.Equal(got, by) {
		t.Errorf("detectedBy enum %v, want %v", got, by)
	}
}

// jsonFields lists the JSON member names of a struct type.
func jsonFields(typ reflect.Type) []string {
	var out []string
	for f := range typ.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

func keys(t *testing.T, v any) []string {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%v is not an object", v)
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestDataSchemaCoversEventData: a member added to bridge.EventData (or its
// parts) without a schema update fails here rather than at a consumer.
func TestDataSchemaCoversEventData(t *testing.T) {
	data := schemaDoc(t, schemas.DataSchemaFile)
	for _, tc := range []struct {
		typ  reflect.Type
		path []string
	}{
		{reflect.TypeFor[bridge.EventData](), []string{"properties"}},
		{reflect.TypeFor[bridge.NativeStatus](), []string{"properties", "native", "properties"}},
		{reflect.TypeFor[bridge.Progress](), []string{"properties", "progress", "properties"}},
		{reflect.TypeFor[bridge.VendorTime](), []string{"$defs", "vendorTime", "properties"}},
	} {
		if got, want := keys(t, get(t, data, tc.path...)), jsonFields(tc.typ); !slices.Equal(got, want) {
			t.Errorf("%s: schema members %v, Go JSON fields %v", tc.typ, got, want)
		}
	}
}

func TestFiles(t *testing.T) {
	for _, name := range []string{schemas.EventSchemaFile, schemas.DataSchemaFile, schemas.AsyncAPIFile} {
		if b, err := fs.ReadFile(schemas.Files(), name); err != nil || len(b) == 0 {
			t.Errorf("%s: %d bytes, %v", name, len(b), err)
		}
	}
	if _, err := fs.ReadFile(schemas.Files(), "../go.mod"); err == nil {
		t.Error("Files must not reach outside the package")
	}
}

// TestValidatorConcurrent: one Validator serves many goroutines; run with
// -race to make this test mean something beyond "no panic".
func TestValidatorConcurrent(t *testing.T) {
	v := newValidator(t)
	good, _ := json.Marshal(validEvent(t))
	bad := []byte(strings.Replace(string(good), `"specversion":"1.0"`, `"specversion":"2.0"`, 1))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if err := v.ValidateEvent(good); err != nil {
					t.Error(err)
					return
				}
				if err := v.ValidateEvent(bad); err == nil {
					t.Error("bad event passed")
					return
				}
			}
		})
	}
	wg.Wait()
}
