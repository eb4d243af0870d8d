//go:build linux && genman

package main

import (
	"fmt"
	"os"
)

// The man page generator of the package build:
//
//	go run -tags genman ./cmd/t3-supervise VERSION YYYY-MM-DD >t3-supervise.1
//
// It is this package compiled with one more file, so the page comes from the same help texts as
// the binary beside it; the build tag keeps the generator out of the binary that ships. It runs
// from init, before main looks at its arguments as a supervisor would.
func init() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: go run -tags genman ./cmd/t3-supervise VERSION YYYY-MM-DD")
		os.Exit(exitUsage)
	}
	if err := writeManPage(os.Stdout, os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintf(os.Stderr, "genman: %v\n", err)
		os.Exit(exitInternal)
	}
	os.Exit(exitOK)
}
