package hmcsim

import (
	"errors"
	"fmt"
	"io"
	"time"

	"gopkg.in/yaml.v3"
)

// scenario is the file form of Options: everything a standalone run needs,
// nothing that only a Go caller can give (Clock, Logger).
type scenario struct {
	Users              map[string]string `yaml:"users"`
	APIMajorVersion    int               `yaml:"apiMajorVersion"`
	APIMinorVersion    int               `yaml:"apiMinorVersion"`
	HMCName            string            `yaml:"hmcName"`
	HMCVersion         string            `yaml:"hmcVersion"`
	SessionIdleTimeout time.Duration     `yaml:"sessionIdleTimeout"`
	SessionLifetime    time.Duration     `yaml:"sessionLifetime"`
	Retention          time.Duration     `yaml:"retention"`
	TLS                bool              `yaml:"tls"`
	DefaultScript      []Step            `yaml:"defaultScript"`
	Jobs               []Job             `yaml:"jobs"`
	Faults             []Fault           `yaml:"faults"`
}

// LoadScenario reads a scenario in YAML (JSON is YAML too): server settings,
// jobs with their scripts, and faults with the time they fire. Durations are
// Go duration strings ("90s", "4h"); a negative timeout or retention means
// never. Unknown keys are errors, so a typo does not silently drop a fault.
// See testdata/example.yaml.
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
		Users:              sc.Users,
		APIMajorVersion:    sc.APIMajorVersion,
		APIMinorVersion:    sc.APIMinorVersion,
		HMCName:            sc.HMCName,
		HMCVersion:         sc.HMCVersion,
		SessionIdleTimeout: sc.SessionIdleTimeout,
		SessionLifetime:    sc.SessionLifetime,
		Retention:          sc.Retention,
		TLS:                sc.TLS,
		DefaultScript:      sc.DefaultScript,
		Jobs:               sc.Jobs,
		Faults:             sc.Faults,
	}
	// Check everything a server would, without listening.
	if _, err := newServer(opts); err != nil {
		return Options{}, fmt.Errorf("scenario: %w", err)
	}
	return opts, nil
}
