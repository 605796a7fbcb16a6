package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// plotSpec is one line chart: metrics of one benchmark family against a
// sub-benchmark parameter.
type plotSpec struct {
	File, Title  string
	Bench, Param string
	XLabel       string
	YLabel       string
	LogX, LogY   bool
	Lines        []lineSpec
	Section      string
	Explain      string
}

type lineSpec struct {
	Metric, Name string
	// Const draws a horizontal reference (a target) instead of a metric.
	Const  float64
	Dashed bool
}

// check is a headline figure: a ratio against the same run's baseline or
// a target, with its pass condition.
type check struct {
	Section, What  string
	Bench, Sub     string // Sub "" means every result of the family
	Metric         string
	Target         string
	Pass           func(v float64) bool
	Scale          float64 // multiply before printing (1 when 0)
	Unit, Baseline string
}

// plots are the report's figures; a plot whose data is missing is skipped.
var plots = []plotSpec{
	{File: "poll-memory.svg", Title: "Resident memory per watched job", Bench: "BenchmarkPollRate", Param: "jobs", XLabel: "watched jobs", YLabel: "bytes per job", LogX: true,
		Section: "poll", Explain: "Growth of the bridge process's RSS and Go heap from zero watches to N, divided by N, and of the NATS server's RSS (its own process); dashed: the 2 KB target.",
		Lines: []lineSpec{{Metric: "rss-B/job", Name: "bridge RSS / job"}, {Metric: "heap-B/job", Name: "bridge heap / job"}, {Metric: "nats-rss-B/job", Name: "NATS server RSS / job"},
			{Const: 2048, Name: "target 2 KB", Dashed: true}}},
	{File: "poll-cpu.svg", Title: "CPU per poll at the scheduled rate", Bench: "BenchmarkPollRate", Param: "jobs", XLabel: "watched jobs", YLabel: "CPU µs per poll", LogX: true,
		Section: "poll", Explain: "Process CPU (bridge, simulators and NATS) per poll, and the bare HTTP client's per request at the same rate.",
		Lines: []lineSpec{{Metric: "cpu-us/poll", Name: "bridge"}, {Metric: "bare-cpu-us/req", Name: "bare net/http"}}},
	{File: "poll-lag.svg", Title: "Scheduling lag p99 against watched jobs", Bench: "BenchmarkPollRate", Param: "jobs", XLabel: "watched jobs", YLabel: "lag (ms, log)", LogX: true, LogY: true,
		Section: "poll", Explain: "How late polls start against their schedule: the bridge's jobbridge_scheduling_lag_seconds and the bare client's lag in the same buckets.",
		Lines: []lineSpec{{Metric: "lag-p99-ms", Name: "bridge p99"}, {Metric: "bare-lag-p99-ms", Name: "bare p99"}, {Metric: "lag-p50-ms", Name: "bridge p50"}, {Metric: "bare-lag-p50-ms", Name: "bare p50"}}},
	{File: "poll-rate.svg", Title: "Achieved polls/s against scheduled", Bench: "BenchmarkPollRate", Param: "jobs", XLabel: "watched jobs", YLabel: "polls per second (log)", LogX: true, LogY: true,
		Section: "poll", Explain: "Scheduled rate (jobs / interval) and what each side achieved.",
		Lines: []lineSpec{{Metric: "sched-polls/s", Name: "scheduled", Dashed: true}, {Metric: "polls/s", Name: "bridge"}, {Metric: "bare-req/s", Name: "bare net/http"}}},
	{File: "poll-saturated.svg", Title: "Saturated poll throughput", Bench: "BenchmarkPollPath", Param: "jobs", XLabel: "watched jobs", YLabel: "polls (requests) per second", LogX: true,
		Section: "saturated", Explain: "Polling as fast as the workers allow: the bridge against the bare client replaying its requests, alternating windows.",
		Lines: []lineSpec{{Metric: "polls/s", Name: "bridge"}, {Metric: "bare-req/s", Name: "bare net/http"}}},
	{File: "poll-saturated-memory.svg", Title: "Memory per job (saturated run)", Bench: "BenchmarkPollPath", Param: "jobs", XLabel: "watched jobs", YLabel: "bytes per job", LogX: true,
		Section: "saturated", Explain: "Average and marginal (second half of the jobs) RSS per job.",
		Lines: []lineSpec{{Metric: "rss-B/job", Name: "RSS / job"}, {Metric: "rss-marg-B/job", Name: "marginal RSS / job"}, {Const: 2048, Name: "target 2 KB", Dashed: true}}},
	{File: "push-latency.svg", Title: "Push path latency against completion rate", Bench: "BenchmarkPushRate", Param: "rate", XLabel: "completions per second", YLabel: "ms (log)", LogX: true, LogY: true,
		Section: "push", Explain: "Completion in the simulator to terminal event delivered from JetStream, open loop; bare: STOMP subscriber publishing straight to JetStream. Dashed: the 10 ms p99 target.",
		Lines: []lineSpec{{Metric: "p50-ms", Name: "bridge p50"}, {Metric: "p99-ms", Name: "bridge p99"}, {Metric: "p999-ms", Name: "bridge p99.9"},
			{Metric: "bare-p50-ms", Name: "bare p50"}, {Metric: "bare-p99-ms", Name: "bare p99"}, {Metric: "p99-best-round-ms", Name: "bridge p99, best round"},
			{Const: 10, Name: "target p99", Dashed: true}}},
	{File: "startup.svg", Title: "Start-up time against watches in KV", Bench: "BenchmarkStartup", Param: "jobs", XLabel: "watches (and tracker records)", YLabel: "seconds", LogX: true,
		Section: "startup", Explain: "From bridge.New to Ready, against listing the watch keys (the least any start must do).",
		Lines: []lineSpec{{Metric: "ready-s", Name: "bridge to Ready"}, {Metric: "list-keys-s", Name: "list KV keys"}, {Metric: "read-all-s", Name: "read all KV entries"}}},
}

// checks are the headline figures, in report order.
var checks = []check{
	{Section: "poll", What: "poll path, achieved / scheduled rate", Bench: "BenchmarkPollRate", Metric: "rate-ratio", Target: "≥ 0.99", Pass: func(v float64) bool { return v >= 0.99 }, Baseline: "scheduled"},
	{Section: "poll", What: "poll path at the scheduled rate, bridge / bare polls/s", Bench: "BenchmarkPollRate", Metric: "ratio", Target: "≥ 0.7", Pass: func(v float64) bool { return v >= 0.7 }, Baseline: "bare net/http, same rate"},
	{Section: "poll", What: "poll path CPU, bare µs/req ÷ bridge µs/poll", Bench: "BenchmarkPollRate", Metric: "cpu-ratio", Target: "≥ 0.7", Pass: func(v float64) bool { return v >= 0.7 }, Baseline: "bare net/http"},
	{Section: "poll", What: "scheduling lag p99 / poll interval", Bench: "BenchmarkPollRate", Metric: "lag-p99/interval", Target: "< 1", Pass: func(v float64) bool { return v < 1 }, Baseline: "the interval"},
	{Section: "poll", What: "bridge resident memory per watched job (B)", Bench: "BenchmarkPollRate", Sub: "jobs=100000", Metric: "rss-B/job", Target: "≤ 2048", Pass: func(v float64) bool { return v <= 2048 }, Baseline: "zero watches"},
	{Section: "poll", What: "bridge + NATS server resident memory per job (B)", Bench: "BenchmarkPollRate", Sub: "jobs=100000", Metric: "total-rss-B/job", Target: "—", Baseline: "zero watches"},
	{Section: "saturated", What: "saturated poll path, bridge / bare req/s", Bench: "BenchmarkPollPath", Metric: "ratio", Target: "≥ 0.7", Pass: func(v float64) bool { return v >= 0.7 }, Baseline: "bare net/http, alternating windows"},
	{Section: "saturated", What: "saturated poll path, CPU ratio", Bench: "BenchmarkPollPath", Metric: "cpu-ratio", Target: "≥ 0.7", Pass: func(v float64) bool { return v >= 0.7 }, Baseline: "bare net/http"},
	{Section: "publish", What: "publish path, bridge / raw JetStream async events/s", Bench: "BenchmarkPublishPath", Metric: "ratio", Target: "≥ 0.8", Pass: func(v float64) bool { return v >= 0.8 }, Baseline: "raw nats.go PublishAsync"},
	{Section: "push", What: "push path p99 (ms)", Bench: "BenchmarkPushRate", Sub: "rate=1000", Metric: "p99-ms", Target: "< 10", Pass: func(v float64) bool { return v < 10 }, Baseline: "—"},
	{Section: "push", What: "push path p99, quietest round (ms)", Bench: "BenchmarkPushRate", Sub: "rate=1000", Metric: "p99-best-round-ms", Target: "< 10", Pass: func(v float64) bool { return v < 10 }, Baseline: "—"},
	{Section: "push", What: "push path p99, bridge / bare", Bench: "BenchmarkPushRate", Metric: "p99-ratio", Target: "—", Baseline: "bare STOMP → PublishAsync"},
	{Section: "push", What: "longest stall of the sender loop (ms)", Bench: "BenchmarkPushRate", Metric: "sender-stall-ms", Target: "—", Baseline: "machine load"},
	{Section: "startup", What: "start-up, time to Ready / time to read both buckets", Bench: "BenchmarkStartup", Metric: "ratio", Target: "—", Baseline: "KV watchers over both buckets"},
	{Section: "startup", What: "start-up, time to Ready / time to list the watch keys", Bench: "BenchmarkStartup", Metric: "list-ratio", Target: "—", Baseline: "kv.ListKeys"},
}

// sectionTitles orders the report.
var sectionTitles = []struct{ key, title, bench, about string }{
	{"poll", "1. Poll path at realistic intervals", "BenchmarkPollRate", "Jobs spread over the five vendor simulators, each polled once per interval, every poll a \"no change\"."},
	{"saturated", "1b. Poll path, saturated", "BenchmarkPollPath", "The bridge polling as fast as it can, beside a bare net/http client replaying its requests (alternating windows, medians)."},
	{"publish", "2. Publish path", "BenchmarkPublishPath", "Transitions from the tracker to the JetStream ack, beside raw nats.go PublishAsync of the identical messages."},
	{"push", "3. Push path", "BenchmarkPushRate", "HMC STOMP completion to the terminal event delivered from JetStream, open loop."},
	{"startup", "4. Start-up", "BenchmarkStartup", "Time to Ready with N watches in the KV registry and N tracker records in the state bucket."},
	{"memory", "5. Memory, fake poller", "BenchmarkWatchedJobMemory", "Go heap per watched job with a fake poller (no HTTP clients)."},
}

// series returns a family's (param, metric) points sorted by param.
func series(run *Run, bench, param, metric string) []Point {
	var pts []Point
	for _, r := range run.Family(bench) {
		x, ok := r.Param(param)
		if !ok {
			continue
		}
		y, ok := r.Metric(metric)
		if !ok {
			continue
		}
		pts = append(pts, Point{X: x, Y: y})
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].X < pts[j].X })
	return pts
}

// chart builds a spec's chart, or false when no metric of it has data.
func (p plotSpec) chart(run *Run) (LineChart, bool) {
	c := LineChart{Title: p.Title, XLabel: p.XLabel, YLabel: p.YLabel, LogX: p.LogX, LogY: p.LogY, YFromZero: !p.LogY}
	var xs []float64
	have := false
	for _, l := range p.Lines {
		if l.Metric == "" {
			continue
		}
		pts := series(run, p.Bench, p.Param, l.Metric)
		if len(pts) > 0 {
			have = true
			c.Series = append(c.Series, Series{Name: l.Name, Points: pts, Dashed: l.Dashed})
			for _, pt := range pts {
				xs = append(xs, pt.X)
			}
		}
	}
	if !have {
		return c, false
	}
	lo, hi := slices.Min(xs), slices.Max(xs)
	for _, l := range p.Lines {
		if l.Metric == "" {
			c.Series = append(c.Series, Series{Name: l.Name, Points: []Point{{lo, l.Const}, {hi, l.Const}}, Dashed: l.Dashed})
		}
	}
	return c, true
}

// fmtVal prints a table value with sensible precision.
func fmtVal(v float64) string {
	av := math.Abs(v)
	switch {
	case math.IsNaN(v):
		return "n/a"
	case av >= 1000:
		return fmt.Sprintf("%.0f", v)
	case av >= 100:
		return fmt.Sprintf("%.1f", v)
	case av >= 1:
		return fmt.Sprintf("%.2f", v)
	case av == 0:
		return "0"
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// table renders a family as a Markdown table: one row per result, one
// column per unit in first-seen order. ns/op is left out: with -benchtime
// 1x it is the benchmark's whole run, set-up included, not a figure.
func table(results []*Result) string {
	var units []string
	seen := map[string]bool{}
	for _, r := range results {
		for _, u := range r.Units {
			if u == "ns/op" {
				continue
			}
			if !seen[u] {
				seen[u] = true
				units = append(units, u)
			}
		}
	}
	var b strings.Builder
	b.WriteString("| benchmark | " + strings.Join(escapeAll(units), " | ") + " |\n")
	b.WriteString("|---" + strings.Repeat("|--:", len(units)) + "|\n")
	for _, r := range results {
		name := r.Sub
		if name == "" {
			name = r.Base
		}
		cells := []string{escape(name)}
		for _, u := range units {
			if v, ok := r.Metrics[u]; ok {
				cells = append(cells, fmtVal(v))
			} else {
				cells = append(cells, "")
			}
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	return b.String()
}

func escape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func escapeAll(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = escape(x)
	}
	return out
}

// Options of one report.
type Options struct {
	// Out is the directory for report.md and the SVGs.
	Out string
	// Profiles are text summaries (go tool pprof -top) to include, by title.
	Profiles []Profile
	// Conditions describe the run (machine, load, knobs).
	Conditions []string
}

// Profile is one pprof summary.
type Profile struct {
	Title, Text string
}

// Write renders report.md and the plots into o.Out and returns the files
// written.
func Write(run *Run, o Options) ([]string, error) {
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("results directory: %w", err)
	}
	var files []string
	figs := map[string][]plotSpec{}
	for _, p := range plots {
		c, ok := p.chart(run)
		if !ok {
			continue
		}
		path := filepath.Join(o.Out, p.File)
		if err := os.WriteFile(path, []byte(c.SVG()), 0o644); err != nil {
			return nil, fmt.Errorf("writing %s: %w", path, err)
		}
		files = append(files, path)
		figs[p.Section] = append(figs[p.Section], p)
	}
	if pub := run.Family("BenchmarkPublishPath"); len(pub) > 0 {
		bc := BarChart{Title: "Publish path throughput", YLabel: "events per second"}
		ours, raw := BarSeries{Name: "bridge"}, BarSeries{Name: "raw JetStream async"}
		for _, r := range pub {
			name := r.Sub
			if name == "" {
				name = "5000 jobs x 4"
			}
			bc.Categories = append(bc.Categories, name)
			ours.Values = append(ours.Values, metricOr(r, "events/s"))
			raw.Values = append(raw.Values, metricOr(r, "raw-events/s"))
		}
		bc.Series = []BarSeries{ours, raw}
		path := filepath.Join(o.Out, "publish.svg")
		if err := os.WriteFile(path, []byte(bc.SVG()), 0o644); err != nil {
			return nil, fmt.Errorf("writing %s: %w", path, err)
		}
		files = append(files, path)
		figs["publish"] = append(figs["publish"], plotSpec{File: "publish.svg", Title: bc.Title, Explain: "Median events/s of alternating rounds."})
	}
	md := Markdown(run, o, figs)
	path := filepath.Join(o.Out, "report.md")
	if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return append(files, path), nil
}

func metricOr(r *Result, unit string) float64 {
	if v, ok := r.Metrics[unit]; ok {
		return v
	}
	return math.NaN()
}

// Markdown renders the report text; figs lists the SVGs written per
// section.
func Markdown(run *Run, o Options, figs map[string][]plotSpec) string {
	var b strings.Builder
	b.WriteString("# jobbridge benchmark report\n\n")
	b.WriteString("Generated by `go run ./cmd/benchreport` from the output of `make bench`. Every figure comes from one run; each ratio is against a baseline measured in the same run on the same machine.\n\n")
	if len(o.Conditions) > 0 || len(run.Env) > 0 {
		b.WriteString("## Conditions\n\n")
		for _, k := range []string{"goos", "goarch", "cpu"} {
			if v, ok := run.Env[k]; ok {
				fmt.Fprintf(&b, "- %s: %s\n", k, v)
			}
		}
		for _, c := range o.Conditions {
			fmt.Fprintf(&b, "- %s\n", c)
		}
		b.WriteString("\n")
	}
	if len(run.Failures) > 0 {
		b.WriteString("## Failures\n\n")
		for _, f := range run.Failures {
			fmt.Fprintf(&b, "- `%s`\n", f)
		}
		b.WriteString("\n")
	}

	b.WriteString("## Headline figures\n\n")
	b.WriteString("| figure | case | value | target | against | met |\n|---|---|--:|---|---|:-:|\n")
	for _, c := range checks {
		for _, r := range run.Family(c.Bench) {
			if c.Sub != "" && r.Sub != c.Sub {
				continue
			}
			v, ok := r.Metric(c.Metric)
			if !ok {
				continue
			}
			met := "—"
			if c.Pass != nil {
				met = "no"
				if c.Pass(v) {
					met = "yes"
				}
			}
			sub := r.Sub
			if sub == "" {
				sub = "—"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", escape(c.What), escape(sub), fmtVal(v), c.Target, c.Baseline, met)
		}
	}
	b.WriteString("\n")

	for _, s := range sectionTitles {
		res := run.Family(s.bench)
		if len(res) == 0 {
			continue
		}
		fmt.Fprintf(&b, "## %s\n\n%s\n\n", s.title, s.about)
		b.WriteString(table(res))
		b.WriteString("\n")
		for _, p := range figs[s.key] {
			fmt.Fprintf(&b, "![%s](%s)\n\n%s\n\n", p.Title, p.File, p.Explain)
		}
		var logs []string
		for _, r := range res {
			for _, l := range r.Logs {
				logs = append(logs, r.Name+": "+l)
			}
		}
		if len(logs) > 0 {
			b.WriteString("<details><summary>benchmark log</summary>\n\n```\n")
			b.WriteString(strings.Join(logs, "\n"))
			b.WriteString("\n```\n</details>\n\n")
		}
	}
	known := map[string]bool{}
	for _, s := range sectionTitles {
		known[s.bench] = true
	}
	var other []string
	for _, base := range run.Bases() {
		if !known[base] {
			other = append(other, base)
		}
	}
	if len(other) > 0 {
		b.WriteString("## Other benchmarks\n\n")
		for _, base := range other {
			fmt.Fprintf(&b, "### %s\n\n%s\n", base, table(run.Family(base)))
		}
	}
	if len(o.Profiles) > 0 {
		b.WriteString("## Profiles\n\n")
		for _, p := range o.Profiles {
			fmt.Fprintf(&b, "### %s\n\n```\n%s\n```\n\n", p.Title, strings.TrimSpace(p.Text))
		}
	}
	return b.String()
}
