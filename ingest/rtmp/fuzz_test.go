package rtmp

import (
	"errors"
	"strings"
	"testing"
)

func TestStreamKeyFromPath(t *testing.T) {
	cases := []struct {
		path, key string
		err       error
	}{
		{"/live/" + testKey, testKey, nil},
		{"live/" + testKey, testKey, nil},
		{"/live/" + testKey + "?bandwidthtest=true", testKey, nil},
		{"/live/", "", errNoKey},
		{"/live", "", errNoKey},
		{"/", "", errWrongApp},
		{"", "", errWrongApp},
		{"/Live/k", "", errWrongApp},
		{"/app/live/k", "", errWrongApp},
		{"/" + testKey, "", errWrongApp},
		{"/live/a/b", "", errBadKey},
		{"/live/k/", "k", nil},
		{"/live//k", "k", nil},
		{"//live/k", "k", nil},
		{"/live//", "", errNoKey},
		{"/live/?k", "", errNoKey},
	}
	for _, c := range cases {
		key, err := streamKeyFromPath(c.path)
		if key != c.key || !errors.Is(err, c.err) {
			t.Errorf("streamKeyFromPath(%q) = %q, %v; want %q, %v", c.path, key, err, c.key, c.err)
		}
	}
}

// FuzzStreamKeyFromPath checks the parser of client-supplied paths: it
// never panics, an accepted key is a single clean path element that
// round-trips, and a refusal's text never echoes the input (it may hold
// the key).
func FuzzStreamKeyFromPath(f *testing.F) {
	for _, s := range []string{
		"/live/" + testKey, "live/k", "/live/k?x=y", "/live/", "/live", "", "/", "//live/k",
		"/live//k", "/live/a/b", "/other/k", "/live/k\x00", "/live/%2f", "/live/?", "/live/ké",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		key, err := streamKeyFromPath(p)
		if err != nil {
			if key != "" {
				t.Fatalf("key %q returned with error %v", key, err)
			}
			if !errors.Is(err, errWrongApp) && !errors.Is(err, errNoKey) && !errors.Is(err, errBadKey) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if key == "" || strings.ContainsAny(key, "/?\x00") {
			t.Fatalf("bad key %q from %q", key, p)
		}
		if again, err := streamKeyFromPath("/" + App + "/" + key); err != nil || again != key {
			t.Fatalf("key %q does not round-trip: %q, %v", key, again, err)
		}
	})
}

// FuzzRedact checks that redact never lets the key through, whatever the
// key and the text around it.
func FuzzRedact(f *testing.F) {
	f.Add("unable to parse secretkey123 here", testKey)
	f.Add("aab", "ab")
	f.Add("[stream key]", "e")
	f.Add("(withheld)", "d")
	f.Add("kkkk", "kk")
	f.Add("", "x")
	f.Fuzz(func(t *testing.T, s, key string) {
		out := redact(s, key)
		if key == "" {
			if out != s {
				t.Fatalf("empty key changed the text")
			}
			return
		}
		if strings.Contains(out, key) {
			t.Fatalf("redact(%q, %q) = %q still contains the key", s, key, out)
		}
	})
}

// FuzzChunkGuard feeds arbitrary chunk streams to the input guard: it
// never panics, never frames past its input, and gortmplib reads the same
// messages through it as without it, up to a refusal.
func FuzzChunkGuard(f *testing.F) {
	for _, s := range guardSeeds(f) {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, authed bool) {
		p := newChunkParser()
		p.authed = authed
		if n, _ := parseAll(&p, data); n > len(data) {
			t.Fatalf("framed %d bytes of %d", n, len(data))
		}
		checkGuardMatchesLibrary(t, data, false)
	})
}
