package simkit

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type testScenario struct {
	Users  map[string]string `yaml:"users"`
	Faults []Fault           `yaml:"faults"`
}

type testOptions struct {
	Users  map[string]string
	Faults []Fault
}

func (sc testScenario) options() (testOptions, error) {
	if len(sc.Users) == 0 {
		return testOptions{}, errors.New("scenario has no users")
	}
	return testOptions{Users: sc.Users, Faults: sc.Faults}, nil
}

func checkTestOptions(o testOptions) error {
	q := NewFaultQueue[Fault](t0, testVocab(), nil)
	for _, f := range o.Faults {
		if err := q.Arm(f, t0); err != nil {
			return err
		}
	}
	return nil
}

func load(text string) (testOptions, error) {
	return LoadScenario(strings.NewReader(text), testScenario.options, checkTestOptions)
}

func TestScenarioLoads(t *testing.T) {
	o, err := load(`
users: {ops: pw}
faults:
  - {kind: status, status: 503, count: 2, endpoint: status, at: 90s}
  - {"kind": "delay", "delay": "2s"}
`)
	if err != nil {
		t.Fatal(err)
	}
	want := []Fault{{Kind: FaultStatus, Status: 503, Count: 2, Endpoint: epStatus, At: 90 * time.Second}, {Kind: FaultDelay, Delay: 2 * time.Second}}
	if o.Users["ops"] != "pw" || len(o.Faults) != 2 || o.Faults[0] != want[0] || o.Faults[1] != want[1] {
		t.Fatalf("options %+v", o)
	}
}

func TestScenarioIsStrict(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"", "scenario is empty"},
		{"users: {ops: pw}\nuser: {typo: 1}", "field user not found"},
		{"users: {ops: pw}\nfaults: [{kind: status, statuss: 503}]", "field statuss not found"},
		{"users: {ops: pw}\nfaults: [{kind: delay, delay: soon}]", "scenario: "},
		{"users: [ops]", "scenario: "},
		{"faults: []", "scenario has no users"},
		{"users: {ops: pw}\nfaults: [{kind: boom}]", `scenario: unknown fault kind "boom"`},
	} {
		_, err := load(tc.text)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want it to say %q", tc.text, err, tc.want)
		}
	}
}
