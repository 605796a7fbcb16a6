// Command benchreport turns the output of `make bench` (the standard Go
// benchmark format, several packages in one file) into a Markdown report
// with SVG plots: cost against watched jobs, push latency against rate,
// each figure beside its baseline from the same run. It owns nothing else;
// the benchmarks themselves live next to the code they measure.
//
//	go run ./cmd/benchreport -in results/bench.txt -out results/
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("benchreport", flag.ContinueOnError)
	in := fs.String("in", "results/bench.txt", "benchmark output to read")
	out := fs.String("out", "results", "directory for report.md and the SVG plots")
	profGlob := fs.String("profiles", "", "glob of pprof text summaries to include (default OUT/profile-*.txt)")
	var conds []string
	fs.Func("cond", "a line describing the run's conditions (repeatable)", func(s string) error {
		conds = append(conds, s)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := os.Open(*in)
	if err != nil {
		return fmt.Errorf("open the benchmark output (run `make bench` first): %w", err)
	}
	defer f.Close()
	parsed, err := Parse(f)
	if err != nil {
		return err
	}
	if len(parsed.Results) == 0 {
		return errors.New(*in + " holds no benchmark results: did the run fail? (see its end)")
	}
	glob := *profGlob
	if glob == "" {
		glob = filepath.Join(*out, "profile-*.txt")
	}
	names, err := filepath.Glob(glob)
	if err != nil {
		return fmt.Errorf("profiles glob %q: %w", glob, err)
	}
	sort.Strings(names)
	var profiles []Profile
	for _, n := range names {
		body, err := os.ReadFile(n)
		if err != nil {
			return err
		}
		title := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(n), "profile-"), ".txt")
		profiles = append(profiles, Profile{Title: title, Text: string(body)})
	}
	files, err := Write(parsed, Options{Out: *out, Profiles: profiles, Conditions: conds})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d results from %d benchmarks; wrote %s\n", len(parsed.Results), len(parsed.Bases()), strings.Join(files, ", "))
	return nil
}
