package arcgissim

import (
	"errors"
	"io"
	"time"

	"github.com/jobbridge/jobbridge/pollers/pollkit/simkit"
)

// scenario is the file form of Options: what a standalone run needs,
// nothing only a Go caller can give (Clock, Logger).
type scenario struct {
	Users              map[string]string `yaml:"users"`
	StaticTokens       []string          `yaml:"staticTokens"`
	Anonymous          bool              `yaml:"anonymous"`
	MaxTokenExpiration time.Duration     `yaml:"maxTokenExpiration"`
	TLS                bool              `yaml:"tls"`
	Jobs               []Job             `yaml:"jobs"`
	Faults             []Fault           `yaml:"faults"`
}

// LoadScenario reads a scenario in YAML (JSON is YAML too): users, tokens,
// jobs with their scripts and faults with the time they fire. Durations are
// Go duration strings ("90s", "2m"). Unknown keys are errors, so a typo does
// not silently drop a fault. See testdata/example.yaml.
func LoadScenario(r io.Reader) (Options, error) {
	return simkit.LoadScenario(r, scenario.options, checkOptions)
}

func (sc scenario) options() (Options, error) {
	if sc.MaxTokenExpiration < 0 {
		return Options{}, errors.New("scenario maxTokenExpiration must not be negative")
	}
	return Options{
		Users:              sc.Users,
		StaticTokens:       sc.StaticTokens,
		Anonymous:          sc.Anonymous,
		MaxTokenExpiration: sc.MaxTokenExpiration,
		TLS:                sc.TLS,
		Jobs:               sc.Jobs,
		Faults:             sc.Faults,
	}, nil
}

// checkOptions checks everything a server would, without listening.
func checkOptions(opts Options) error {
	_, err := newServer(opts)
	return err
}
