package huaweisim

import (
	"errors"
	"fmt"
	"io"
	"time"

	"gopkg.in/yaml.v3"
)

// scenario is the file form of Options: everything a standalone run needs,
// nothing only a Go caller can give (Clock, Logger).
type scenario struct {
	ProjectID     string            `yaml:"projectID"`
	ProjectName   string            `yaml:"projectName"`
	Domain        string            `yaml:"domain"`
	Users         map[string]string `yaml:"users"`
	TokenTTL      time.Duration     `yaml:"tokenTTL"`
	Envelope      Envelope          `yaml:"envelope"`
	EpochTimes    bool              `yaml:"epochTimes"`
	MaxLimit      int               `yaml:"maxLimit"`
	TLS           bool              `yaml:"tls"`
	DefaultScript []Step            `yaml:"defaultScript"`
	Jobs          []Job             `yaml:"jobs"`
	Faults        []Fault           `yaml:"faults"`
}

// LoadScenario reads a scenario in YAML (JSON is YAML too): server
// settings, jobs with their task scripts, and faults with the time they
// fire. Durations are Go duration strings ("90s", "2m"). Unknown keys are
// errors, so a typo does not silently drop a fault. See
// testdata/example.yaml.
func LoadScenario(r io.Reader) (Options, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var sc scenario
	if err := dec.Decode(&sc); err != nil {
		if errors.Is(err, io.EOF) {
			return Options{}, errors.New("scenario is empty")
		}
		return Options{}, fmt.Errorf("scenario: %w", err)
	}
	opts := Options{
		ProjectID: sc.ProjectID, ProjectName: sc.ProjectName, Domain: sc.Domain, Users: sc.Users,
		TokenTTL: sc.TokenTTL, Envelope: sc.Envelope, EpochTimes: sc.EpochTimes, MaxLimit: sc.MaxLimit,
		TLS: sc.TLS, DefaultScript: sc.DefaultScript, Jobs: sc.Jobs, Faults: sc.Faults,
	}
	// Check everything a server would, without listening.
	if _, err := newServer(opts); err != nil {
		return Options{}, fmt.Errorf("scenario: %w", err)
	}
	return opts, nil
}
