package simkit

import (
	"errors"
	"fmt"
	"io"

	"gopkg.in/yaml.v3"
)

// LoadScenario reads a scenario in YAML (JSON is YAML too) into its file
// form F, strictly: an unknown key is an error, so a typo does not
// silently drop a fault. options turns the file form into the simulator's
// options; check then validates those as starting a server would, without
// listening.
func LoadScenario[F, O any](r io.Reader, options func(F) (O, error), check func(O) error) (O, error) {
	var zero O
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var file F
	if err := dec.Decode(&file); err != nil {
		if errors.Is(err, io.EOF) {
			return zero, errors.New("scenario is empty")
		}
		return zero, fmt.Errorf("scenario: %w", err)
	}
	opts, err := options(file)
	if err != nil {
		return zero, err
	}
	if err := check(opts); err != nil {
		return zero, fmt.Errorf("scenario: %w", err)
	}
	return opts, nil
}
