package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/jobbridge/jobbridge/bridge/config"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
	"github.com/jobbridge/jobbridge/pollers/registry"
	"github.com/rs/zerolog"
)

func lookupEnv(k string) (string, bool) { return os.LookupEnv(k) }

func cmdValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file to check (required)")
	print := fs.Bool("print", false, "print the effective configuration, secrets redacted")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *path == "" {
		return fmt.Errorf("%w: --config FILE is required", errUsage)
	}
	cfg, warnings, err := loadConfig(*path)
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if err != nil {
		return err
	}
	// Building the pollers checks vendor options and resolves secrets,
	// without contacting any vendor.
	if _, err := registry.Build(ctx, cfg.Instances, pollkit.Deps{Env: lookupEnv, Logger: zerolog.New(stderr).Level(zerolog.WarnLevel)}); err != nil {
		return err
	}
	if *print {
		out, err := cfg.Redacted()
		if err != nil {
			return err
		}
		_, _ = stdout.Write(out)
		return nil
	}
	fmt.Fprintf(stdout, "%s: valid (%d instances, %d jobs)\n", *path, len(cfg.Instances), countJobs(cfg.Instances))
	return nil
}

func countJobs(insts []config.Instance) int {
	n := 0
	for _, in := range insts {
		n += len(in.Jobs)
	}
	return n
}
