package schemas_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/schemas"
)

// TestEachTypeSchemaAcceptsItsOwnEventsOnly encodes one event of every type
// the code can emit and checks it against every per-type schema.
func TestEachTypeSchemaAcceptsItsOwnEventsOnly(t *testing.T) {
	v, err := schemas.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := v.Types(), slices.Sorted(slices.Values(bridge.EventTypes())); !slices.Equal(got, want) {
		t.Fatalf("type schemas %v, event types %v", got, want)
	}
	enc, err := bridge.NewEncoder(bridge.EncoderOptions{Subjects: bridge.Subjects{Prefix: "jobs"}, RawCap: 1024})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	bodies := map[string][]byte{}
	for _, typ := range bridge.EventTypes() {
		rest := strings.TrimPrefix(typ, bridge.TypePrefix)
		entity, what, _ := strings.Cut(rest, ".")
		c := bridge.Change{Seq: 4, Obs: bridge.Observation{Job: bridge.JobRef{Vendor: "hmc", Instance: "p", ID: "j"}, State: bridge.StateRunning, Native: "running", ObservedAt: at}}
		if entity == "task" {
			c.Obs.Job.Task = "t1"
		}
		if bridge.State(what).Valid() {
			c.Kind, c.Obs.State = bridge.KindTransition, bridge.State(what)
		} else {
			c.Kind = bridge.EventKind(what)
		}
		switch c.Kind {
		case bridge.KindStalled:
			c.StalledSince = at.Add(-time.Hour)
		case bridge.KindDeadlineMissed:
			c.Deadline = at.Add(-time.Minute)
		case bridge.KindProgress:
			n := 2
			c.Obs.Progress = &bridge.Progress{StepsDone: &n}
		}
		ev, err := enc.Encode(&c)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if ev.Type != typ {
			t.Fatalf("built %s, want %s", ev.Type, typ)
		}
		bodies[typ] = ev.Msg.Data
	}
	for typ, body := range bodies {
		for _, schemaType := range v.Types() {
			err := v.ValidateEventOfType(schemaType, body)
			if schemaType == typ && err != nil {
				t.Errorf("%s does not validate against its own schema: %v", typ, err)
			}
			if schemaType != typ && err == nil {
				t.Errorf("%s validates against the schema of %s", typ, schemaType)
			}
		}
	}
}
