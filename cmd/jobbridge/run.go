package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/jobbridge/jobbridge/bridge/config"
)

func cmdRun(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (YAML); without one, jobbridge runs on defaults and JOBBRIDGE_* variables")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	cfg, warnings, err := loadConfig(*path)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		log.Warn().Msg(w)
	}
	s, err := startStack(ctx, cfg, log, stackOptions{})
	if err != nil {
		return err
	}
	defer s.close()
	return s.bridge.Run(ctx)
}

// loadConfig reads a file, or builds defaults plus environment overrides.
func loadConfig(path string) (*config.Config, []string, error) {
	if path != "" {
		return config.Load(path)
	}
	cfg, warnings, err := config.Parse("(defaults)", []byte("{}"), lookupEnv)
	if err != nil {
		return nil, nil, fmt.Errorf("configuration from the environment: %w", err)
	}
	return cfg, warnings, nil
}
