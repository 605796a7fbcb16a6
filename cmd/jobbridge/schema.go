package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"

	"github.com/jobbridge/jobbridge/schemas"
)

func cmdSchema(_ context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("schema", flag.ContinueOnError)
	flags.SetOutput(stderr)
	if err := flags.Parse(args); err != nil {
		return errUsage
	}
	files := schemas.Files()
	if flags.NArg() == 0 {
		fmt.Fprintln(stdout, "Event contract files (print one with `jobbridge schema NAME`):")
		return fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				fmt.Fprintln(stdout, "  "+p)
			}
			return err
		})
	}
	b, err := fs.ReadFile(files, flags.Arg(0))
	if err != nil {
		return fmt.Errorf("%w: no schema file %q: run `jobbridge schema` for the list", errUsage, flags.Arg(0))
	}
	_, err = stdout.Write(b)
	return err
}
