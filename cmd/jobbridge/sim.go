package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/jobbridge/jobbridge/pollers/tso/tsosim"
	"github.com/rs/zerolog"
)

func cmdSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: jobbridge sim tso|helix|arcgis|huawei|hmc [--scenario FILE] (default: the demo's scenario)", errUsage)
	}
	vendor := args[0]
	fs := flag.NewFlagSet("sim "+vendor, flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve on (loopback by default)")
	scenario := fs.String("scenario", "", "scenario file: jobs, scripts and faults (see the simulator's testdata/example.yaml)")
	useTLS := fs.Bool("tls", false, "serve https with a self-signed certificate (tso; the others always use TLS)")
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	log := zerolog.New(stderr).With().Timestamp().Logger()
	switch vendor {
	case "tso":
		opts := tsosim.Options{}
		if *scenario != "" {
			f, err := os.Open(*scenario)
			if err != nil {
				return err
			}
			opts, err = tsosim.LoadScenario(f)
			f.Close()
			if err != nil {
				return fmt.Errorf("scenario %s: %w", *scenario, err)
			}
		}
		opts.TLS = opts.TLS || *useTLS
		opts.Logger = log
		s, err := tsosim.Listen(*listen, opts)
		if err != nil {
			return err
		}
		defer s.Close()
		fmt.Fprintf(stdout, "TSO simulator at %s (Ctrl-C stops)\n", s.URL)
		<-ctx.Done()
		return nil
	}
	for _, v := range scenarioVendors() {
		if v.vendor != vendor {
			continue
		}
		scenarioBytes, err := demodata.ReadFile("demodata/" + vendor + ".yaml")
		if *scenario != "" {
			scenarioBytes, err = os.ReadFile(*scenario)
		}
		if err != nil {
			return err
		}
		sim, err := v.start(scenarioBytes)
		if err != nil {
			return fmt.Errorf("scenario: %w", err)
		}
		defer sim.stop()
		dir, err := os.MkdirTemp("", "jobbridge-sim-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		ca, err := writeCA(dir, vendor, sim.cert.Raw)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s simulator at %s (TLS; its certificate as a CA file: %s) - Ctrl-C stops\n", vendor, sim.url, ca)
		<-ctx.Done()
		return nil
	}
	return fmt.Errorf("%w: unknown simulator %q (available: tso, helix, arcgis, huawei, hmc)", errUsage, vendor)
}
