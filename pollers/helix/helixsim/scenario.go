package helixsim

import (
	"io"
	"time"

	"github.com/jobbridge/jobbridge/pollers/pollkit/simkit"
)

// scenario is the file form of Options: everything a standalone run needs,
// nothing that only a Go caller can give (Clock, Logger).
type scenario struct {
	AccessKeys     []AccessKey   `yaml:"accessKeys"`
	APITokens      []string      `yaml:"apiTokens"`
	JWTTTL         time.Duration `yaml:"jwtTTL"`
	JWTWithoutExp  bool          `yaml:"jwtWithoutExp"`
	Literal204     bool          `yaml:"literal204"`
	NotFoundStatus int           `yaml:"notFoundStatus"`
	StampAtStart   bool          `yaml:"stampAtStart"`
	RunDuration    time.Duration `yaml:"runDuration"`
	SeparatePortal bool          `yaml:"separatePortal"`
	TLS            bool          `yaml:"tls"`
	ETLs           []ETL         `yaml:"etls"`
	Faults         []Fault       `yaml:"faults"`
}

// LoadScenario reads a scenario in YAML (JSON is YAML too): server
// settings, ETLs with their runs or service steps, and faults with the time
// they fire. Durations are Go duration strings ("90s", "2m"). Unknown keys
// are errors, so a typo does not silently drop a fault. See
// testdata/example.yaml.
func LoadScenario(r io.Reader) (Options, error) {
	return simkit.LoadScenario(r, scenario.options, checkOptions)
}

func (sc scenario) options() (Options, error) {
	return Options{
		AccessKeys:     sc.AccessKeys,
		APITokens:      sc.APITokens,
		JWTTTL:         sc.JWTTTL,
		JWTWithoutExp:  sc.JWTWithoutExp,
		Literal204:     sc.Literal204,
		NotFoundStatus: sc.NotFoundStatus,
		StampAtStart:   sc.StampAtStart,
		RunDuration:    sc.RunDuration,
		SeparatePortal: sc.SeparatePortal,
		TLS:            sc.TLS,
		ETLs:           sc.ETLs,
		Faults:         sc.Faults,
	}, nil
}

// checkOptions checks everything a server would, without listening.
func checkOptions(opts Options) error {
	_, err := newServer(opts)
	return err
}
