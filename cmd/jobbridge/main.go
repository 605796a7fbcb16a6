// Command jobbridge watches jobs on vendor systems and publishes every state
// transition as a CloudEvent on NATS JetStream.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Set by the linker (-ldflags "-X main.version=...").
var version = "0.1.0-dev"

const usage = `jobbridge: job state transitions from vendor REST APIs as CloudEvents on NATS

Usage:
  jobbridge run      --config FILE          run the bridge
  jobbridge demo     [--duration D]         embedded NATS + simulators + bridge + live view
  jobbridge tail     [filters] [--json]     print events as they arrive
  jobbridge watch    add|rm|get|ls ...      manage watched jobs
  jobbridge status   [--config FILE] [--json]  replicas, their shards and leases (scale-out)
  jobbridge validate --config FILE          check a config file (and --print it, secrets redacted)
  jobbridge schema   [NAME]                 print the event contract (JSON Schema)
  jobbridge sim      VENDOR [--listen ADDR] run a vendor simulator
  jobbridge version

Run 'jobbridge COMMAND -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks errors whose fix is a different command line.
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"run":      cmdRun,
		"demo":     cmdDemo,
		"tail":     cmdTail,
		"watch":    cmdWatch,
		"status":   cmdStatus,
		"validate": cmdValidate,
		"schema":   cmdSchema,
		"sim":      cmdSim,
		"version": func(_ context.Context, _ []string, out, _ io.Writer) error {
			fmt.Fprintln(out, "jobbridge", version)
			return nil
		},
	}
	name := args[0]
	if name == "-h" || name == "--help" || name == "help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	cmd, ok := cmds[name]
	if !ok {
		fmt.Fprintf(stderr, "jobbridge: unknown command %q\n\n%s", name, usage)
		return 2
	}
	if err := cmd(ctx, args[1:], stdout, stderr); err != nil {
		if errors.Is(err, errUsage) {
			fmt.Fprintln(stderr, "jobbridge "+name+":", err)
			return 2
		}
		fmt.Fprintln(stderr, "jobbridge "+name+": error:", err)
		return 1
	}
	return 0
}
