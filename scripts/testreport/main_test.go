package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Failing tests print their output (a parallel one's too, though its
// lines interleave with a passing one's), passing tests do not; a panic
// and a build failure are failures; the counts close the report.
func TestReportCountsAndPrintsFailures(t *testing.T) {
	r, out := feed(t, canned)
	code := verdict(r, nil, false, nil, nil, out)
	text := out.String()
	for _, want := range []string{
		"a_test.go:4: boom", "--- FAIL: TestFail",
		"a_test.go:7: p2 broke", "--- FAIL: TestPar2",
		"panic: kaboom", "b_test.go:4",
		"undefined: undefined", "FAIL\tfx/c [build failed]",
		"SKIP fx/a TestSkip: a_test.go:5: no widget here",
		"FAIL fx/a", "FAIL fx/b", "FAIL fx/c",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	for _, quiet := range []string{"a_test.go:3: fine", "p1 says hi", "--- PASS"} {
		if strings.Contains(text, quiet) {
			t.Errorf("a passing test's output %q printed:\n%s", quiet, text)
		}
	}
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if last := lines[len(lines)-1]; last != "total: 3 passed, 4 failed, 1 skipped" {
		t.Errorf("closing line %q", last)
	}
	if code == 0 {
		t.Error("failures, yet exit code 0")
	}
}

const passing = `{"Action":"start","Package":"m/p"}
{"Action":"run","Package":"m/p","Test":"TestA"}
{"Action":"output","Package":"m/p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output","Package":"m/p","Test":"TestA","Output":"--- PASS: TestA (0.00s)\n"}
{"Action":"pass","Package":"m/p","Test":"TestA","Elapsed":0}
{"Action":"run","Package":"m/p","Test":"TestB"}
{"Action":"output","Package":"m/p","Test":"TestB","Output":"=== RUN   TestB\n"}
{"Action":"output","Package":"m/p","Test":"TestB","Output":"    p_test.go:9: SKIPPED — no widget\n"}
{"Action":"output","Package":"m/p","Test":"TestB","Output":"--- SKIP: TestB (0.00s)\n"}
{"Action":"skip","Package":"m/p","Test":"TestB","Elapsed":0}
{"Action":"output","Package":"m/p","Output":"ok  \tm/p\t0.01s\n"}
{"Action":"pass","Package":"m/p","Elapsed":0.01}
{"Action":"start","Package":"m/none"}
{"Action":"output","Package":"m/none","Output":"?   \tm/none\t[no test files]\n"}
{"Action":"skip","Package":"m/none","Elapsed":0}
`

// A skip passes outside CI; under CI=true only when the allow list names
// it. A package without tests is not a skip.
func TestSkipGate(t *testing.T) {
	r, out := feed(t, passing)
	if code := verdict(r, nil, false, nil, nil, out); code != 0 {
		t.Fatalf("outside CI: %d\n%s", code, out)
	}
	r, out = feed(t, passing)
	if code := verdict(r, nil, true, nil, nil, out); code == 0 || !strings.Contains(out.String(), "m/p TestB was skipped and is not on the allow list") {
		t.Fatalf("CI, no allow list: %d\n%s", code, out)
	}
	if strings.Contains(out.String(), "m/none") && !strings.Contains(out.String(), "total: 1 passed, 0 failed, 1 skipped") {
		t.Fatalf("a package without tests counted:\n%s", out)
	}
	r, out = feed(t, passing)
	if code := verdict(r, allowList{{pkg: "p", test: "TestB"}}, true, nil, nil, out); code != 0 {
		t.Fatalf("CI, allowed: %d\n%s", code, out)
	}
}

// A binary that dies (a timeout panic) with tests running: they are
// failures, with their output and the package's.
func TestUnfinishedTestsFail(t *testing.T) {
	stream := `{"Action":"start","Package":"m/slow"}
{"Action":"run","Package":"m/slow","Test":"TestHang"}
{"Action":"output","Package":"m/slow","Test":"TestHang","Output":"=== RUN   TestHang\n"}
{"Action":"output","Package":"m/slow","Test":"TestHang","Output":"    slow_test.go:5: waiting\n"}
{"Action":"output","Package":"m/slow","Output":"panic: test timed out after 20m0s\n"}
{"Action":"output","Package":"m/slow","Output":"FAIL\tm/slow\t1200.1s\n"}
{"Action":"fail","Package":"m/slow","Elapsed":1200.1}
`
	r, out := feed(t, stream)
	code := verdict(r, nil, false, nil, nil, out)
	for _, want := range []string{"slow_test.go:5: waiting", "--- FAIL: TestHang (did not finish)", "panic: test timed out", "total: 0 passed, 1 failed, 0 skipped"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
	if code == 0 {
		t.Error("exit code 0")
	}
}

func TestNoTestRanFails(t *testing.T) {
	r, out := feed(t, "{\"Action\":\"skip\",\"Package\":\"m/none\"}\n")
	if code := verdict(r, nil, false, nil, nil, out); code == 0 || !strings.Contains(out.String(), "no test ran") {
		t.Fatalf("%d\n%s", code, out)
	}
}

// run propagates the command's failure even when every event it printed
// was a pass, and prints lines that are not JSON.
func TestRunPropagatesExitStatus(t *testing.T) {
	dir := t.TempDir()
	stream := filepath.Join(dir, "stream")
	if err := os.WriteFile(stream, []byte(passing+"go: something went wrong\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"--", "sh", "-c", "cat " + stream + "; echo oops >&2; exit 3"}, false, &out, &errb)
	if code == 0 || !strings.Contains(out.String(), "exited with status 3") || !strings.Contains(out.String(), "go: something went wrong") ||
		!strings.Contains(errb.String(), "oops") {
		t.Fatalf("code %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"--", "sh", "-c", "cat " + stream}, false, &out, &errb); code != 0 {
		t.Fatalf("a green run: %d\n%s", code, out.String())
	}
	if code := run(context.Background(), []string{"--", filepath.Join(dir, "missing")}, false, &out, &errb); code == 0 {
		t.Fatal("a command that cannot start: exit 0")
	}
}

func TestAllowList(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.txt")
	os.WriteFile(good, []byte("# header\n\nstore/pgmeta TestFault*  # needs a postgres user\n"), 0o644)
	l, err := loadAllowList(good)
	if err != nil {
		t.Fatal(err)
	}
	if !l.allows("github.com/x/store/pgmeta", "TestFaultInjection") || l.allows("github.com/x/store/pgmetax", "TestFault") ||
		l.allows("github.com/x/store/pgmeta", "TestOther") {
		t.Errorf("matching: %+v", l)
	}
	bad := filepath.Join(dir, "bad.txt")
	os.WriteFile(bad, []byte("store/pgmeta TestFault\n"), 0o644)
	if _, err := loadAllowList(bad); err == nil || !strings.Contains(err.Error(), "bad.txt:1") {
		t.Errorf("an entry without a reason: %v", err)
	}
}
