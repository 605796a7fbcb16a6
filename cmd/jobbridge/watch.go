package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

type natsConn = *nats.Conn

type labelFlag map[string]string

func (l labelFlag) String() string { return fmt.Sprint(map[string]string(l)) }
func (l labelFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q: use key=value", v)
	}
	l[k] = val
	return nil
}

func cmdWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: jobbridge watch add|rm|get|ls [flags] [JOB]", errUsage)
	}
	sub := args[0]
	fs := flag.NewFlagSet("watch "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clientFlags
	cf.register(fs)
	vendor := fs.String("vendor", "", "vendor of the job (tso, helix, arcgis, huawei, hmc)")
	instance := fs.String("instance", "", "configured instance name")
	interval := fs.Duration("interval", 0, "poll interval for this job (add; default: the instance's)")
	stalled := fs.Duration("stalled-after", 0, "publish a stalled event after this long without change (add)")
	deadline := fs.String("deadline", "", "RFC 3339 time by which the job must be terminal (add)")
	limit := fs.Int("limit", 100, "page size (ls)")
	asJSON := fs.Bool("json", false, "print JSON")
	labels := labelFlag{}
	fs.Var(labels, "label", "key=value copied into every event of the job (add; repeatable)")
	vendorOpts := labelFlag{}
	fs.Var(vendorOpts, "vendor-option", "key=value the vendor needs for this job, e.g. notifyTopic=<HMC session's job topic> (add; repeatable)")
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	nc, err := cf.connect(ctx, zerolog.New(stderr).Level(zerolog.WarnLevel))
	if err != nil {
		return err
	}
	defer nc.Close()
	c := bridge.WatchClient{NC: nc}
	needJob := func() (bridge.JobRef, error) {
		if fs.NArg() != 1 || *vendor == "" || *instance == "" {
			return bridge.JobRef{}, fmt.Errorf("%w: jobbridge watch %s --vendor V --instance I JOB", errUsage, sub)
		}
		return bridge.JobRef{Vendor: *vendor, Instance: *instance, ID: fs.Arg(0)}, nil
	}
	print := func(v any) {
		if *asJSON {
			b, _ := json.MarshalIndent(v, "", "  ")
			fmt.Fprintln(stdout, string(b))
		}
	}
	switch sub {
	case "add":
		job, err := needJob()
		if err != nil {
			return err
		}
		w := bridge.Watch{Vendor: job.Vendor, Instance: job.Instance, Job: job.ID, Interval: bridge.Duration(*interval),
			StalledAfter: bridge.Duration(*stalled), Origin: "cli"}
		if len(labels) > 0 {
			w.Labels = labels
		}
		if len(vendorOpts) > 0 {
			w.VendorOptions = vendorOpts
		}
		if *deadline != "" {
			t, err := time.Parse(time.RFC3339, *deadline)
			if err != nil {
				return fmt.Errorf("%w: --deadline %q is not RFC 3339 (e.g. 2026-12-01T18:00:00Z)", errUsage, *deadline)
			}
			w.Deadline = &t
		}
		r, err := c.Add(ctx, w)
		if err != nil {
			return err
		}
		print(r)
		if !*asJSON {
			if r.Created {
				fmt.Fprintf(stdout, "watching %s\n", job)
			} else {
				fmt.Fprintf(stdout, "already watching %s (options updated if they differed)\n", job)
			}
		}
	case "rm":
		job, err := needJob()
		if err != nil {
			return err
		}
		if err := c.Remove(ctx, job); err != nil {
			return err
		}
		if !*asJSON {
			fmt.Fprintf(stdout, "no longer watching %s\n", job)
		}
	case "get":
		job, err := needJob()
		if err != nil {
			return err
		}
		w, err := c.Get(ctx, job)
		if err != nil {
			return err
		}
		b, _ := json.MarshalIndent(w, "", "  ")
		fmt.Fprintln(stdout, string(b))
	case "ls":
		after := ""
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		if !*asJSON {
			fmt.Fprintln(tw, "VENDOR\tINSTANCE\tJOB\tORIGIN\tADDED")
		}
		var all []bridge.Watch
		for {
			r, err := c.List(ctx, bridge.ListFilter{Vendor: *vendor, Instance: *instance, After: after, Limit: *limit})
			if err != nil {
				return err
			}
			for _, w := range r.Watches {
				all = append(all, w)
				if !*asJSON {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", w.Vendor, w.Instance, w.Job, w.Origin, w.AddedAt.Local().Format(time.DateTime))
				}
			}
			if r.Next == "" {
				break
			}
			after = r.Next
		}
		if *asJSON {
			print(all)
		}
		return tw.Flush()
	default:
		return fmt.Errorf("%w: unknown watch command %q: use add, rm, get or ls", errUsage, sub)
	}
	return nil
}
