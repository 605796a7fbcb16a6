package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Result is one benchmark result line: BenchmarkPollRate/jobs=1000-2 1
// 123 ns/op 45.6 polls/s ...
type Result struct {
	// Pkg is the import path from the preceding "pkg:" line.
	Pkg string
	// Name is the full name without the GOMAXPROCS suffix.
	Name string
	// Base is the top-level benchmark (BenchmarkPollRate); Sub the rest
	// (jobs=1000), "" for a benchmark without sub-benchmarks.
	Base, Sub string
	// Params holds the key=value parts of Sub (jobs -> 1000): the x axis.
	Params map[string]string
	Procs  int
	Iters  int64
	// Metrics maps a unit (polls/s, ns/op) to its value; Units keeps the
	// order they were printed in.
	Metrics map[string]float64
	Units   []string
	// Logs are the b.Log lines printed under the result.
	Logs []string
}

// Run is everything one `go test -bench` output holds.
type Run struct {
	Results []*Result
	// Env holds goos, goarch, cpu as printed.
	Env map[string]string
	// Failures are lines saying a benchmark or package failed.
	Failures []string
}

// Param returns the numeric value of a sub-benchmark parameter.
func (r *Result) Param(key string) (float64, bool) {
	v, ok := r.Params[key]
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(v, 64)
	return f, err == nil
}

// Metric returns a metric by unit.
func (r *Result) Metric(unit string) (float64, bool) {
	v, ok := r.Metrics[unit]
	return v, ok
}

var (
	// A full result: name, iterations, then value-unit pairs.
	resultRe = regexp.MustCompile(`^(Benchmark\S+)\s+(\d+)\s+(.*)$`)
	// The tail of a result whose name line was broken by the benchmark
	// printing to stdout while it ran.
	tailRe  = regexp.MustCompile(`^\s*(\d+)\s+(-?[0-9.]+(?:e[+-]?\d+)?\s+\S+.*)$`)
	procsRe = regexp.MustCompile(`^(.*)-(\d+)$`)
)

// Parse reads the standard benchmark output format (go help testflag,
// golang.org/x/perf/benchfmt), tolerating b.Log lines, output printed by
// benchmarks between a name and its figures, and several packages.
func Parse(r io.Reader) (*Run, error) {
	run := &Run{Env: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	pkg, pending := "", ""
	var last *Result
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimSpace(strings.TrimPrefix(line, "pkg: "))
			last = nil
			continue
		case strings.HasPrefix(line, "goos: "), strings.HasPrefix(line, "goarch: "), strings.HasPrefix(line, "cpu: "):
			k, v, _ := strings.Cut(line, ": ")
			run.Env[k] = strings.TrimSpace(v)
			continue
		case strings.HasPrefix(line, "--- FAIL"), strings.HasPrefix(line, "FAIL"), strings.HasPrefix(trimmed, "panic:"):
			run.Failures = append(run.Failures, trimmed)
			last = nil
			continue
		}
		if m := resultRe.FindStringSubmatch(line); m != nil {
			if res, err := newResult(pkg, m[1], m[2], m[3]); err == nil {
				run.Results = append(run.Results, res)
				last, pending = res, ""
				continue
			}
		}
		if strings.HasPrefix(line, "Benchmark") {
			// A name whose figures come on a later line.
			pending = strings.Fields(line)[0]
			last = nil
			continue
		}
		if pending != "" {
			if m := tailRe.FindStringSubmatch(line); m != nil {
				if res, err := newResult(pkg, pending, m[1], m[2]); err == nil {
					run.Results = append(run.Results, res)
					last, pending = res, ""
					continue
				}
			}
		}
		if last != nil && (strings.HasPrefix(line, "    ") || strings.HasPrefix(line, "\t")) && trimmed != "" {
			last.Logs = append(last.Logs, trimmed)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading benchmark output: %w", err)
	}
	return run, nil
}

func newResult(pkg, name, iters, rest string) (*Result, error) {
	n, err := strconv.ParseInt(iters, 10, 64)
	if err != nil {
		return nil, err
	}
	res := &Result{Pkg: pkg, Name: name, Iters: n, Params: map[string]string{}, Metrics: map[string]float64{}}
	if m := procsRe.FindStringSubmatch(name); m != nil {
		res.Name = m[1]
		res.Procs, _ = strconv.Atoi(m[2])
	}
	res.Base, res.Sub, _ = strings.Cut(res.Name, "/")
	for _, part := range strings.Split(res.Sub, "/") {
		if k, v, ok := strings.Cut(part, "="); ok {
			res.Params[k] = v
		}
	}
	f := strings.Fields(rest)
	if len(f) == 0 || len(f)%2 != 0 {
		return nil, fmt.Errorf("%s: %d fields after the iterations, want value-unit pairs", name, len(f))
	}
	for i := 0; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return nil, fmt.Errorf("%s: value %q: %w", name, f[i], err)
		}
		if _, dup := res.Metrics[f[i+1]]; !dup {
			res.Units = append(res.Units, f[i+1])
		}
		res.Metrics[f[i+1]] = v
	}
	return res, nil
}

// Family returns the results of one top-level benchmark, in output order.
func (run *Run) Family(base string) []*Result {
	var out []*Result
	for _, r := range run.Results {
		if r.Base == base {
			out = append(out, r)
		}
	}
	return out
}

// Bases lists the top-level benchmarks in output order.
func (run *Run) Bases() []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range run.Results {
		if !seen[r.Base] {
			seen[r.Base] = true
			out = append(out, r.Base)
		}
	}
	return out
}
