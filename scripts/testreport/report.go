package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// event is one line of `go test -json`: a test2json TestEvent, or a
// BuildEvent (ImportPath, Action build-output or build-fail).
type event struct {
	Action      string
	Package     string
	Test        string
	Output      string
	FailedBuild string
	ImportPath  string
}

// testState is what is known of one test (or subtest) of a package.
type testState struct {
	output []string
	done   bool
}

// pkgState is one package's tests and counts.
type pkgState struct {
	name                    string
	tests                   map[string]*testState
	output                  []string // the package's own output (no Test)
	passed, failed, skipped int
	done, fail              bool
}

// skipped is a test that called t.Skip, with its output (the reason).
type skipped struct {
	pkg, test, reason string
}

// report follows a `go test -json` stream: failing tests' output is
// printed as it would be without -json; passing tests' output is not.
type report struct {
	out   io.Writer
	pkgs  map[string]*pkgState
	skips []skipped
	// other counts lines that were not JSON (printed as they came).
	other int
}

func newReport(out io.Writer) *report {
	return &report{out: out, pkgs: map[string]*pkgState{}}
}

// read consumes the stream until EOF.
func (r *report) read(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		r.line(sc.Text())
	}
	return sc.Err()
}

// line handles one line of the stream.
func (r *report) line(s string) {
	var e event
	if !strings.HasPrefix(s, "{") || json.Unmarshal([]byte(s), &e) != nil || e.Action == "" {
		// Not an event (go's own messages): print it, it may be the
		// only word about a failure.
		r.other++
		fmt.Fprintln(r.out, s)
		return
	}
	switch e.Action {
	case "build-output":
		fmt.Fprint(r.out, e.Output)
		return
	case "build-fail":
		return // the package's fail event follows, with FailedBuild
	}
	p := r.pkg(e.Package)
	if e.Test == "" {
		r.pkgEvent(p, e)
		return
	}
	t := p.tests[e.Test]
	if t == nil {
		t = &testState{}
		p.tests[e.Test] = t
	}
	switch e.Action {
	case "output":
		t.output = append(t.output, e.Output)
	case "pass":
		t.done = true
		p.passed++
	case "fail":
		t.done = true
		p.failed++
		r.print(t.output)
	case "skip":
		t.done = true
		p.skipped++
		r.skips = append(r.skips, skipped{pkg: p.name, test: e.Test, reason: skipReason(t.output)})
	}
}

func (r *report) pkg(name string) *pkgState {
	p := r.pkgs[name]
	if p == nil {
		p = &pkgState{name: name, tests: map[string]*testState{}}
		r.pkgs[name] = p
	}
	return p
}

// pkgEvent handles an event of the package itself. A failed package
// prints its own output (a panic, a timeout, "[build failed]") and the
// output of tests that never finished: a panic or a timeout ends the
// binary with tests still running, which count as failed.
func (r *report) pkgEvent(p *pkgState, e event) {
	switch e.Action {
	case "output":
		p.output = append(p.output, e.Output)
	case "pass", "skip":
		p.done = true
	case "fail":
		p.done, p.fail = true, true
		names := make([]string, 0, len(p.tests))
		for name, t := range p.tests {
			if !t.done {
				names = append(names, name)
			}
		}
		sort.Strings(names)
		for _, name := range names {
			t := p.tests[name]
			t.done = true
			p.failed++
			r.print(t.output)
			fmt.Fprintf(r.out, "--- FAIL: %s (did not finish)\n", name)
		}
		r.print(p.output)
		if e.FailedBuild != "" || p.failed == 0 {
			// A build failure (or a binary that failed outside any
			// test) is one failure: the totals must not read as green.
			p.failed++
		}
	}
}

func (r *report) print(lines []string) {
	for _, l := range lines {
		fmt.Fprint(r.out, l)
	}
}

// skipReason is the message a test gave t.Skip: its last output line
// that is not a "=== " or "--- SKIP" marker.
func skipReason(output []string) string {
	reason := ""
	for _, l := range output {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- SKIP") {
			continue
		}
		reason = l
	}
	return reason
}

// totals adds up every package.
func (r *report) totals() (passed, failed, skipped int) {
	for _, p := range r.pkgs {
		passed += p.passed
		failed += p.failed
		skipped += p.skipped
	}
	return passed, failed, skipped
}

// summary prints the skips, one line per package that has tests, and the
// closing line "total: N passed, N failed, N skipped".
func (r *report) summary() {
	for _, s := range r.skips {
		fmt.Fprintf(r.out, "SKIP %s %s: %s\n", s.pkg, s.test, s.reason)
	}
	names := make([]string, 0, len(r.pkgs))
	for name, p := range r.pkgs {
		if p.passed+p.failed+p.skipped > 0 {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	fmt.Fprintln(r.out)
	for _, name := range names {
		p := r.pkgs[name]
		status := "ok  "
		if p.fail || p.failed > 0 {
			status = "FAIL"
		}
		fmt.Fprintf(r.out, "%s %-50s %4d passed, %d failed, %d skipped\n", status, name, p.passed, p.failed, p.skipped)
	}
	passed, failed, skipped := r.totals()
	fmt.Fprintf(r.out, "total: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
}
