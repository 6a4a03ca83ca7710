// Package testenv finds the outside programs tests need (ffmpeg, ffprobe,
// chromium) and decides what happens when one is missing: under CI=true
// the test fails, elsewhere it is skipped with a loud message.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// CI reports whether the tests run under CI (CI=true).
func CI() bool { return os.Getenv("CI") == "true" }

// Require returns the path of program, or fails (CI) / skips the test.
func Require(t testing.TB, program string) string {
	t.Helper()
	p, err := exec.LookPath(program)
	if err == nil {
		return p
	}
	msg := program + " not found on PATH: run `make deps` (or `make test`, which installs it)"
	if CI() {
		t.Fatal(msg)
	}
	t.Skip("SKIPPED — " + msg)
	return ""
}

// FFmpeg returns the ffmpeg path (see Require).
func FFmpeg(t testing.TB) string { return Require(t, "ffmpeg") }

// FFprobe returns the ffprobe path (see Require).
func FFprobe(t testing.TB) string { return Require(t, "ffprobe") }

// Chromium returns the chromium path (see Require).
func Chromium(t testing.TB) string { return Require(t, "chromium") }

// Testdata returns the absolute path of a file in the repository's testdata folder.
func Testdata(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", name)
}
