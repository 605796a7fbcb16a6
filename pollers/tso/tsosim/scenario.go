package tsosim

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jobbridge/jobbridge/pollers/pollkit/simkit"
)

// scenario is the file form of Options: everything a standalone run needs,
// nothing that only a Go caller can give (Clock, Logger).
type scenario struct {
	Context                string            `yaml:"context"`
	Zone                   string            `yaml:"zone"`
	TokenTTL               time.Duration     `yaml:"tokenTTL"`
	Users                  map[string]string `yaml:"users"`
	TLS                    bool              `yaml:"tls"`
	AsyncResponse          string            `yaml:"asyncResponse"`
	CapitalizedProcessName bool              `yaml:"capitalizedProcessName"`
	DefaultScript          []Step            `yaml:"defaultScript"`
	Jobs                   []Job             `yaml:"jobs"`
	Faults                 []Fault           `yaml:"faults"`
}

// LoadScenario reads a scenario in YAML (JSON is YAML too): server settings,
// jobs with their scripts, and faults with the time they fire. Durations are
// Go duration strings ("90s", "2m"). Unknown keys are errors, so a typo does
// not silently drop a fault. See testdata/example.yaml.
func LoadScenario(r io.Reader) (Options, error) {
	return simkit.LoadScenario(r, scenario.options, checkOptions)
}

func (sc scenario) options() (Options, error) {
	opts := Options{
		Context:                sc.Context,
		TokenTTL:               sc.TokenTTL,
		Users:                  sc.Users,
		TLS:                    sc.TLS,
		AsyncResponse:          sc.AsyncResponse,
		CapitalizedProcessName: sc.CapitalizedProcessName,
		DefaultScript:          sc.DefaultScript,
		Jobs:                   sc.Jobs,
		Faults:                 sc.Faults,
	}
	if sc.Zone != "" {
		loc, err := time.LoadLocation(sc.Zone)
		if err != nil {
			return Options{}, fmt.Errorf("scenario zone %q: %w", sc.Zone, err)
		}
		opts.Zone = loc
	}
	if sc.TokenTTL < 0 {
		return Options{}, errors.New("scenario tokenTTL must not be negative")
	}
	return opts, nil
}

// checkOptions checks everything a server would, without listening.
func checkOptions(opts Options) error {
	_, err := newServer(opts)
	return err
}
