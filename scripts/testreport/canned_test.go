package main

import (
	"bytes"
	"strings"
	"testing"
)

// canned is `go test -json ./...` of a module with a passing, a failing,
// a skipped and two parallel tests (fx/a: their output interleaves), a
// panicking test (fx/b) and a package that does not build (fx/c).
const canned = `{"ImportPath":"fx/c [fx/c.test]","Action":"build-output","Output":"# fx/c [fx/c.test]\n"}
{"ImportPath":"fx/c [fx/c.test]","Action":"build-output","Output":"c/c_test.go:3:28: undefined: undefined\n"}
{"ImportPath":"fx/c [fx/c.test]","Action":"build-fail"}
{"Action":"start","Package":"fx/a"}
{"Action":"start","Package":"fx/b"}
{"Action":"run","Package":"fx/b","Test":"TestOK"}
{"Action":"output","Package":"fx/b","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"output","Package":"fx/b","Test":"TestOK","Output":"--- PASS: TestOK (0.00s)\n"}
{"Action":"pass","Package":"fx/b","Test":"TestOK","Elapsed":0}
{"Action":"run","Package":"fx/b","Test":"TestPanic"}
{"Action":"output","Package":"fx/b","Test":"TestPanic","Output":"=== RUN   TestPanic\n"}
{"Action":"output","Package":"fx/b","Test":"TestPanic","Output":"--- FAIL: TestPanic (0.00s)\n"}
{"Action":"output","Package":"fx/b","Test":"TestPanic","Output":"panic: kaboom [recovered, repanicked]\n"}
{"Action":"output","Package":"fx/b","Test":"TestPanic","Output":"\n"}
{"Action":"output","Package":"fx/b","Test":"TestPanic","Output":"goroutine 21 [running]:\n"}
{"Action":"output","Package":"fx/b","Test":"TestPanic","Output":"testing.tRunner.func1.2({0x550fc0, 0x594580})\n"}
{"Action":"output","Package":"fx/b","Test":"TestPanic","Output":"\t/usr/local/go/src/testing/testing.go:1974 +0x232\n"}
{"Action":"output","Package":"fx/b","Test":"TestPanic","Output":"testing.tRunner.func1()\n"}
{"Action":"output","Package":"fx/b","Test":"TestPanic","Output":"\t/usr/local/go/src/testing/testing.go:1977 +0x349\n"}
{"Action":"output","Package":"fx/b","Test":"TestPanic","Output":"panic({0x550fc0?, 0x594580?})\n"}
{"Action":"output","Package":"fx/b","Test":"TestPanic","Output":"\t/usr/local/go/src/runtime/panic.go:860 +0x13a\n"}
{"Action":"output","Package":"fx/b","Test":"TestPanic","Output":"fx/b.TestPanic(0x48cc0226488?)\n"}
{"Action":"output","Package":"fx/b","Test":"TestPanic","Output":"\t/tmp/fx/b/b_test.go:4 +0x25\n"}
{"Action":"output","Package":"fx/b","Test":"TestPanic","Output":"testing.tRunner(0x48cc0226488, 0x592e20)\n"}
{"Action":"output","Package":"fx/b","Test":"TestPanic","Output":"\t/usr/local/go/src/testing/testing.go:2036 +0xea\n"}
{"Action":"output","Package":"fx/b","Test":"TestPanic","Output":"created by testing.(*T).Run in goroutine 1\n"}
{"Action":"output","Package":"fx/b","Test":"TestPanic","Output":"\t/usr/local/go/src/testing/testing.go:2101 +0x4c5\n"}
{"Action":"run","Package":"fx/a","Test":"TestPass"}
{"Action":"output","Package":"fx/a","Test":"TestPass","Output":"=== RUN   TestPass\n"}
{"Action":"output","Package":"fx/a","Test":"TestPass","Output":"    a_test.go:3: fine\n"}
{"Action":"output","Package":"fx/a","Test":"TestPass","Output":"--- PASS: TestPass (0.00s)\n"}
{"Action":"pass","Package":"fx/a","Test":"TestPass","Elapsed":0}
{"Action":"run","Package":"fx/a","Test":"TestFail"}
{"Action":"output","Package":"fx/a","Test":"TestFail","Output":"=== RUN   TestFail\n"}
{"Action":"output","Package":"fx/a","Test":"TestFail","Output":"    a_test.go:4: boom\n"}
{"Action":"output","Package":"fx/a","Test":"TestFail","Output":"--- FAIL: TestFail (0.00s)\n"}
{"Action":"fail","Package":"fx/a","Test":"TestFail","Elapsed":0}
{"Action":"run","Package":"fx/a","Test":"TestSkip"}
{"Action":"output","Package":"fx/a","Test":"TestSkip","Output":"=== RUN   TestSkip\n"}
{"Action":"output","Package":"fx/a","Test":"TestSkip","Output":"    a_test.go:5: no widget here\n"}
{"Action":"output","Package":"fx/a","Test":"TestSkip","Output":"--- SKIP: TestSkip (0.00s)\n"}
{"Action":"skip","Package":"fx/a","Test":"TestSkip","Elapsed":0}
{"Action":"run","Package":"fx/a","Test":"TestPar1"}
{"Action":"output","Package":"fx/a","Test":"TestPar1","Output":"=== RUN   TestPar1\n"}
{"Action":"output","Package":"fx/a","Test":"TestPar1","Output":"=== PAUSE TestPar1\n"}
{"Action":"pause","Package":"fx/a","Test":"TestPar1"}
{"Action":"run","Package":"fx/a","Test":"TestPar2"}
{"Action":"output","Package":"fx/a","Test":"TestPar2","Output":"=== RUN   TestPar2\n"}
{"Action":"output","Package":"fx/a","Test":"TestPar2","Output":"=== PAUSE TestPar2\n"}
{"Action":"pause","Package":"fx/a","Test":"TestPar2"}
{"Action":"cont","Package":"fx/a","Test":"TestPar1"}
{"Action":"output","Package":"fx/a","Test":"TestPar1","Output":"=== CONT  TestPar1\n"}
{"Action":"output","Package":"fx/a","Test":"TestPar1","Output":"    a_test.go:6: p1 says hi\n"}
{"Action":"output","Package":"fx/a","Test":"TestPar1","Output":"--- PASS: TestPar1 (0.00s)\n"}
{"Action":"pass","Package":"fx/a","Test":"TestPar1","Elapsed":0}
{"Action":"cont","Package":"fx/a","Test":"TestPar2"}
{"Action":"output","Package":"fx/a","Test":"TestPar2","Output":"=== CONT  TestPar2\n"}
{"Action":"output","Package":"fx/a","Test":"TestPar2","Output":"    a_test.go:7: p2 broke\n"}
{"Action":"output","Package":"fx/a","Test":"TestPar2","Output":"--- FAIL: TestPar2 (0.00s)\n"}
{"Action":"fail","Package":"fx/a","Test":"TestPar2","Elapsed":0}
{"Action":"output","Package":"fx/a","Output":"FAIL\n"}
{"Action":"fail","Package":"fx/b","Test":"TestPanic","Elapsed":0}
{"Action":"output","Package":"fx/b","Output":"FAIL\tfx/b\t0.007s\n"}
{"Action":"fail","Package":"fx/b","Elapsed":0.008}
{"Action":"output","Package":"fx/a","Output":"FAIL\tfx/a\t0.007s\n"}
{"Action":"fail","Package":"fx/a","Elapsed":0.009}
{"Action":"start","Package":"fx/c"}
{"Action":"output","Package":"fx/c","Output":"FAIL\tfx/c [build failed]\n"}
{"Action":"fail","Package":"fx/c","Elapsed":0,"FailedBuild":"fx/c [fx/c.test]"}`

func feed(t *testing.T, stream string) (*report, *bytes.Buffer) {
	t.Helper()
	var out bytes.Buffer
	r := newReport(&out)
	if err := r.read(strings.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	return r, &out
}
