// Command testreport runs `go test -json ...` and reports it for people:
// the output of failing tests as go test prints it, the skipped tests
// with their reasons, then per package and in total how many tests
// passed, failed and were skipped.
//
//	testreport [-allow FILE] -- go test -json [flags] [packages]
//
// It exits non-zero when go test does, when any test or build failed,
// when no test ran at all, and — under CI=true — when a test was skipped
// that the allow list (FILE, lines "package TestName  # why") does not
// name: a suite must not pass by not testing. Standard error of the
// command passes through.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv("CI") == "true", os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, ci bool, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("testreport", flag.ContinueOnError)
	fs.SetOutput(stderr)
	allowFile := fs.String("allow", "", "skip allow list (package TestName  # why), enforced under CI=true")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cmdArgs := fs.Args()
	if len(cmdArgs) == 0 {
		fmt.Fprintln(stderr, "usage: testreport [-allow FILE] -- go test -json [flags] [packages]")
		return 2
	}
	var allow allowList
	if *allowFile != "" {
		var err error
		if allow, err = loadAllowList(*allowFile); err != nil {
			fmt.Fprintln(stderr, "testreport:", err)
			return 2
		}
	}
	cmd := exec.CommandContext(ctx, cmdArgs[0], cmdArgs[1:]...)
	cmd.Stderr = stderr
	// The test binaries get SIGINT first so that they can clean up
	// (servers they started, temporary databases).
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(stderr, "testreport:", err)
		return 2
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "testreport:", err)
		return 2
	}
	r := newReport(stdout)
	readErr := r.read(out)
	if readErr != nil {
		io.Copy(io.Discard, out) // go test must not block on a full pipe
	}
	waitErr := cmd.Wait()
	return verdict(r, allow, ci, readErr, waitErr, stdout)
}

// verdict prints the summary and what, if anything, fails the run.
func verdict(r *report, allow allowList, ci bool, readErr, waitErr error, w io.Writer) int {
	r.summary()
	code := 0
	if readErr != nil {
		fmt.Fprintln(w, "testreport: reading go test's output:", readErr)
		code = 1
	}
	var exit *exec.ExitError
	switch {
	case errors.As(waitErr, &exit):
		fmt.Fprintf(w, "testreport: go test exited with status %d\n", exit.ExitCode())
		code = 1
	case waitErr != nil:
		fmt.Fprintln(w, "testreport:", waitErr)
		code = 1
	}
	passed, failed, skipped := r.totals()
	if failed > 0 {
		code = 1
	}
	if passed+failed+skipped == 0 {
		fmt.Fprintln(w, "testreport: no test ran")
		code = 1
	}
	if ci {
		for _, s := range r.skips {
			if !allow.allows(s.pkg, s.test) {
				fmt.Fprintf(w, "testreport: CI=true: %s %s was skipped and is not on the allow list (%s)\n", s.pkg, s.test, s.reason)
				code = 1
			}
		}
	}
	return code
}
