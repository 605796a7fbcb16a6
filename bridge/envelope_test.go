package bridge

import (
	"encoding/json"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEnvelopeMatchesSDK holds the hand-written structured encoding to the
// CloudEvents SDK: every event decodes with sdk-go, passes its Validate,
// and equals, member for member, the document sdk-go itself produces from
// the same attributes and data.
func TestEnvelopeMatchesSDK(t *testing.T) {
	enc, err := NewEncoder(EncoderOptions{Subjects: Subjects{Prefix: "jobs"}, RawCap: 64})
	require.NoError(t, err)
	pct := 42.5
	at := time.Date(2026, 11, 23, 9, 14, 2, 123456789, time.FixedZone("CST", -6*3600))
	hostile := "job \"quoted\" <tag> & \\ back slash \u2028 ünï 日本"
	cases := []Change{
		{Kind: KindTransition, Seq: 1, Obs: Observation{Job: JobRef{Vendor: "tso", Instance: "prod", ID: "42"}, State: StatePending, Native: "READY", ObservedAt: at}},
		{Kind: KindTransition, Seq: 7, PreviousState: StateRunning, PreviousNative: "IN_PROGRESS",
			Obs: Observation{Job: JobRef{Vendor: "hmc", Instance: "z16%lab\"x", ID: hostile}, State: StateFailed, Native: "complete",
				Outcome: map[string]string{"job-status-code": "500"}, Raw: []byte(`{"status":"complete","job-status-code":500}`), ObservedAt: at}},
		{Kind: KindProgress, Seq: 3, Obs: Observation{Job: JobRef{Vendor: "arcgis", Instance: "m", ID: "a.b*c>d", Task: "t/1"}, State: StateRunning,
			Native: "esriJobExecuting", Progress: &Progress{Percent: &pct, Message: "step <2>"}, Raw: []byte("not json at all, and longer than the sixty-four byte cap so it is cut"), ObservedAt: at}},
		{Kind: KindStalled, Seq: 9, StalledSince: at.Add(-time.Hour), Obs: Observation{Job: JobRef{Vendor: "helix", Instance: "saas", ID: "53"}, State: StateRunning, ObservedAt: at}},
	}
	for _, c := range cases {
		ev, err := enc.Encode(&c)
		require.NoError(t, err)

		var got cloudevents.Event
		require.NoError(t, json.Unmarshal(ev.Msg.Data, &got), "sdk-go decodes our bytes: %s", ev.Msg.Data)
		require.NoError(t, got.Validate())
		assert.Equal(t, ev.ID, got.ID())
		assert.Equal(t, ev.Type, got.Type())
		assert.Equal(t, subjectAttr(c.Obs.Job), got.Subject(), "strings survive escaping exactly")
		assert.True(t, c.Obs.ObservedAt.Equal(got.Time()))

		want := cloudevents.New(SpecVersion)
		want.SetID(got.ID())
		want.SetSource(got.Source())
		want.SetType(got.Type())
		want.SetSubject(got.Subject())
		want.SetTime(got.Time())
		want.SetDataSchema(DataSchemaURI)
		for k, v := range got.Extensions() {
			want.SetExtension(k, v)
		}
		var data EventData
		require.NoError(t, got.DataAs(&data))
		require.NoError(t, want.SetData(DataMediaType, data))
		sdkJSON, err := json.Marshal(want)
		require.NoError(t, err)
		var a, b map[string]any
		require.NoError(t, json.Unmarshal(ev.Msg.Data, &a))
		require.NoError(t, json.Unmarshal(sdkJSON, &b))
		assert.Equal(t, b, a)
		assert.Equal(t, FormatSequence(c.Seq), a["sequence"])
	}
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "q\"b\\s", "<&>", "\x00\x1f\x7f", "\u2028\u2029", "ünï 日本", string([]byte{0xff, 'a', 0xc0})} {
		want, _ := json.Marshal(s)
		assert.Equal(t, string(want), string(appendJSONString(nil, s)), "%q", s)
	}
}

func TestAppendDataMatchesMarshal(t *testing.T) {
	pct, done, total := 12.5, 3, 7
	at := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	cases := []EventData{
		{Vendor: "tso", Instance: "p", Job: "1", Kind: KindTransition, State: StatePending, Native: NativeStatus{Status: "READY"}, DetectedAt: at, DetectedBy: DetectedByPoll, Sequence: 1},
		{Vendor: "hmc", Instance: "z<&>", Job: "j\"1\\", Task: "t\u2028", Kind: KindStalled, State: StateRunning, PreviousState: StateRunning, Terminal: false,
			Native:  NativeStatus{Status: "running", PreviousStatus: "x", SubState: "cancel-pending"},
			Outcome: map[string]string{"b": "2", "a": "1", "ü": "\x01"}, RunID: "2022-09-08T14:56:28Z",
			Progress:   &Progress{Percent: &pct, StepsDone: &done, StepsTotal: &total, Message: "m"},
			Times:      map[string]VendorTime{"startTime": {Raw: "Wed Dec 31 17:59:59 CST 1969"}, "endTime": {Raw: "1700000000000", Normalized: at}},
			DetectedAt: at, DetectedBy: DetectedBySTOMP, Sequence: 18446744073709551615, Labels: map[string]string{"z": "", "team": "ops"},
			StalledSince: &at, Deadline: &at, Raw: json.RawMessage(`{"status":"running","n":[1,2.5,null]}`), RawBytes: 36},
		{Vendor: "a", Instance: "b", Job: "c", Kind: KindVanished, State: StateUnknown, Terminal: true, DetectedAt: at, DetectedBy: DetectedBySSE, Sequence: 2,
			RawText: "not json", RawTruncated: true, RawBytes: 99999},
	}
	for _, d := range cases {
		want, err := json.Marshal(&d)
		require.NoError(t, err)
		assert.Equal(t, string(want), string(appendData(nil, &d)))
	}
}
