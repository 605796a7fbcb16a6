package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

type tailOptions struct {
	vendor, instance, state, job string
	asJSON                       bool
	all                          bool
	since                        time.Duration
	count                        int
	stream, prefix               string
}

func cmdTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clientFlags
	cf.register(fs)
	var o tailOptions
	fs.StringVar(&o.vendor, "vendor", "", "only this vendor (tso, helix, arcgis, huawei, hmc)")
	fs.StringVar(&o.instance, "instance", "", "only this instance")
	fs.StringVar(&o.state, "state", "", "only this event: a state (pending, running, succeeded, failed, canceled, unknown) or progress, vanished, stalled, deadline_missed")
	fs.StringVar(&o.job, "job", "", "only this job id (and its tasks)")
	fs.BoolVar(&o.asJSON, "json", false, "print each CloudEvent as one JSON line")
	fs.BoolVar(&o.all, "all", false, "start from the first stored event instead of new ones")
	fs.DurationVar(&o.since, "since", 0, "start from events stored this long ago")
	fs.IntVar(&o.count, "count", 0, "exit after this many events (0: run until interrupted)")
	fs.StringVar(&o.stream, "stream", "JOBS", "stream name")
	fs.StringVar(&o.prefix, "prefix", "jobs", "subject prefix")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	log := zerolog.New(stderr).Level(zerolog.WarnLevel)
	nc, err := cf.connect(ctx, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	return tailEvents(ctx, nc, o, stdout)
}

func tailEvents(ctx context.Context, nc natsConn, o tailOptions, out io.Writer) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if o.state != "" && !bridge.State(o.state).Valid() {
		switch bridge.EventKind(o.state) {
		case bridge.KindProgress, bridge.KindVanished, bridge.KindStalled, bridge.KindDeadlineMissed:
		default:
			return fmt.Errorf("%w: --state %q is not a state or event kind", errUsage, o.state)
		}
	}
	subjects := bridge.Subjects{Prefix: o.prefix}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: subjects.Filters(o.vendor, o.instance, o.state, o.job),
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	}
	switch {
	case o.all:
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	case o.since > 0:
		t := time.Now().Add(-o.since)
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	stream, err := js.Stream(ctx, o.stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w (is a bridge running against this NATS?)", o.stream, err)
	}
	cons, err := stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("subscribe to %v: %w", cfg.FilterSubjects, err)
	}
	n := 0
	for o.count == 0 || n < o.count {
		msg, err := cons.Next(jetstream.FetchContext(ctx))
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			continue
		}
		n++
		if o.asJSON {
			fmt.Fprintln(out, strings.TrimSpace(string(msg.Data())))
			continue
		}
		fmt.Fprintln(out, formatEvent(msg.Data()))
	}
	return nil
}

// formatEvent renders one structured-mode event for a human.
func formatEvent(body []byte) string {
	var ev struct {
		Time time.Time        `json:"time"`
		Type string           `json:"type"`
		Data bridge.EventData `json:"data"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return "(not a structured CloudEvent: " + err.Error() + ")"
	}
	d := ev.Data
	job := truncateID(d.Job, 24)
	if d.Task != "" {
		job = truncateID(d.Job, 12) + " ▸ " + truncateID(d.Task, 12)
	}
	prev := string(d.PreviousState)
	if prev == "" {
		prev = "·"
	}
	what := fmt.Sprintf("%-9s → %-9s", prev, d.State)
	if d.Kind != bridge.KindTransition {
		what = fmt.Sprintf("%-21s", strings.ToUpper(string(d.Kind)))
	}
	native := d.Native.Status
	if d.Native.PreviousStatus != "" && d.Kind == bridge.KindTransition {
		native = d.Native.PreviousStatus + " → " + native
	}
	extra := ""
	if d.Progress != nil && d.Progress.StepsDone != nil && d.Progress.StepsTotal != nil {
		extra = fmt.Sprintf(" %d/%d steps", *d.Progress.StepsDone, *d.Progress.StepsTotal)
	}
	if len(d.Outcome) > 0 {
		var parts []string
		for k, v := range d.Outcome {
			parts = append(parts, k+"="+v)
		}
		extra += " " + strings.Join(parts, " ")
	}
	return fmt.Sprintf("%s  %-6s %-8s %-24s %s  [%s]%s  seq=%d via %s",
		ev.Time.Local().Format("15:04:05.000"), d.Vendor, d.Instance, job, what, native, extra, d.Sequence, d.DetectedBy)
}

func truncateID(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
