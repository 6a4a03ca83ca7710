package auth

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testSigner(t testing.TB, seed byte) *URLSigner {
	t.Helper()
	s, err := NewURLSigner(bytes.Repeat([]byte{seed}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var urlNow = time.Unix(1_800_000_000, 0)

func TestURLSignerAccepts(t *testing.T) {
	s := testSigner(t, 1)
	for _, tc := range []struct {
		name string
		g    Grant
		path string
		ip   string
	}{
		{"master", Grant{Prefix: "/live/main/", Expires: urlNow.Add(time.Hour)}, "/live/main/index.m3u8", ""},
		{"segment", Grant{Prefix: "/live/main/", Expires: urlNow.Add(time.Hour), MaxHeight: 1080}, "/live/main/720p/1a-00042.m4s", "10.0.0.1"},
		{"prefix without slash", Grant{Prefix: "/live/main", Expires: urlNow.Add(time.Hour)}, "/live/main/index.m3u8", ""},
		{"prefix itself", Grant{Prefix: "/live/main", Expires: urlNow.Add(time.Hour)}, "/live/main", ""},
		{"root prefix", Grant{Prefix: "/", Expires: urlNow.Add(time.Hour)}, "/vod/film/index.m3u8", ""},
		{"ipv4 bound", Grant{Prefix: "/live/main/", Expires: urlNow.Add(time.Hour), ClientIP: "192.0.2.7"}, "/live/main/index.m3u8", "192.0.2.7"},
		{"ipv4 bound, mapped client", Grant{Prefix: "/live/main/", Expires: urlNow.Add(time.Hour), ClientIP: "192.0.2.7"}, "/live/main/index.m3u8", "::ffff:192.0.2.7"},
		{"ipv6 bound", Grant{Prefix: "/live/main/", Expires: urlNow.Add(time.Hour), ClientIP: "2001:db8::1"}, "/live/main/index.m3u8", "2001:db8:0::1"},
		{"renditions", Grant{Prefix: "/vod/film/", Expires: urlNow.Add(time.Hour), Renditions: []string{"r1", "r2"}}, "/vod/film/r1/seg-00001.m4s", ""},
		{"empty rendition list", Grant{Prefix: "/vod/film/", Expires: urlNow.Add(time.Hour), Renditions: []string{}}, "/vod/film/index.m3u8", ""},
		{"subject", Grant{Prefix: "/vod/film/", Expires: urlNow.Add(time.Hour), Subject: "0123456789abcdef0123456789abcdef",
			IssuedAt: urlNow.Add(-1234 * time.Millisecond)}, "/vod/film/index.m3u8", ""},
		{"subject and everything", Grant{Prefix: "/vod/film/", Expires: urlNow.Add(time.Hour), ClientIP: "192.0.2.7", MaxHeight: 720,
			Renditions: []string{"r1"}, Subject: "u", IssuedAt: urlNow}, "/vod/film/r1/x.m4s", "192.0.2.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := s.Sign(tc.g)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(tok, "v1.") || strings.ContainsFunc(tok, func(c rune) bool {
				return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.", c))
			}) {
				t.Errorf("token %q is not versioned URL-safe text", tok)
			}
			g, err := s.Verify(tok, tc.path, tc.ip, urlNow)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if g.Prefix != tc.g.Prefix || !g.Expires.Equal(tc.g.Expires) || g.MaxHeight != tc.g.MaxHeight ||
				strings.Join(g.Renditions, ",") != strings.Join(tc.g.Renditions, ",") || (g.Renditions == nil) != (tc.g.Renditions == nil) {
				t.Errorf("grant %+v, signed %+v", g, tc.g)
			}
			if (g.ClientIP == "") != (tc.g.ClientIP == "") {
				t.Errorf("client IP %q, signed %q", g.ClientIP, tc.g.ClientIP)
			}
			if g.Subject != tc.g.Subject || !g.IssuedAt.Equal(tc.g.IssuedAt) {
				t.Errorf("subject %q issued %v, signed %q %v", g.Subject, g.IssuedAt, tc.g.Subject, tc.g.IssuedAt)
			}
		})
	}
}

func TestURLSignerRefuses(t *testing.T) {
	s := testSigner(t, 1)
	exp := urlNow.Add(time.Hour)
	base := Grant{Prefix: "/live/main/", Expires: exp, MaxHeight: 720}
	tok := mustSign(t, s, base)
	bound := mustSign(t, s, Grant{Prefix: "/live/main/", Expires: exp, ClientIP: "192.0.2.7"})
	later := mustSign(t, s, Grant{Prefix: "/live/main/", Expires: exp.Add(24 * time.Hour), MaxHeight: 720})
	taller := mustSign(t, s, Grant{Prefix: "/live/main/", Expires: exp, MaxHeight: 2160})
	other := mustSign(t, s, Grant{Prefix: "/live/news/", Expires: exp})
	parts := strings.Split(tok, ".")
	_, laterPayload, _ := strings.Cut(later, ".")
	laterPayload, _, _ = strings.Cut(laterPayload, ".")
	_, tallerPayload, _ := strings.Cut(taller, ".")
	tallerPayload, _, _ = strings.Cut(tallerPayload, ".")
	otherKey := mustSign(t, testSigner(t, 2), base)

	for _, tc := range []struct {
		name, tok, path, ip string
		now                 time.Time
		want                error
	}{
		{"changed path: other channel", tok, "/live/news/index.m3u8", "", urlNow, ErrURLTokenPath},
		{"changed path: /live/mainly/", tok, "/live/mainly/index.m3u8", "", urlNow, ErrURLTokenPath},
		{"changed path: parent", tok, "/live/index.m3u8", "", urlNow, ErrURLTokenPath},
		{"changed path: dot-dot", tok, "/live/main/../news/index.m3u8", "", urlNow, ErrURLTokenPath},
		{"changed path: empty element", tok, "/live/main//x.m4s", "", urlNow, ErrURLTokenPath},
		{"changed path: relative", tok, "live/main/index.m3u8", "", urlNow, ErrURLTokenPath},
		{"other prefix's token", other, "/live/main/index.m3u8", "", urlNow, ErrURLTokenPath},
		{"later expiry spliced in", parts[0] + "." + laterPayload + "." + parts[2], "/live/main/index.m3u8", "", urlNow, ErrURLTokenSignature},
		{"taller limit spliced in", parts[0] + "." + tallerPayload + "." + parts[2], "/live/main/index.m3u8", "", urlNow, ErrURLTokenSignature},
		{"expired", tok, "/live/main/index.m3u8", "", exp, ErrURLTokenExpired},
		{"expired long ago", tok, "/live/main/index.m3u8", "", exp.Add(time.Hour), ErrURLTokenExpired},
		{"IP-bound, other IP", bound, "/live/main/index.m3u8", "192.0.2.8", urlNow, ErrURLTokenClient},
		{"IP-bound, no IP", bound, "/live/main/index.m3u8", "", urlNow, ErrURLTokenClient},
		{"IP-bound, garbage IP", bound, "/live/main/index.m3u8", "192.0.2.7:1234", urlNow, ErrURLTokenClient},
		{"wrong key", otherKey, "/live/main/index.m3u8", "", urlNow, ErrURLTokenSignature},
		{"truncated MAC", tok[:len(tok)-4], "/live/main/index.m3u8", "", urlNow, ErrURLTokenMalformed},
		{"half MAC", parts[0] + "." + parts[1] + "." + parts[2][:22], "/live/main/index.m3u8", "", urlNow, ErrURLTokenMalformed},
		{"empty MAC", parts[0] + "." + parts[1] + ".", "/live/main/index.m3u8", "", urlNow, ErrURLTokenMalformed},
		{"flipped MAC bit", parts[0] + "." + parts[1] + "." + flipFirst(parts[2]), "/live/main/index.m3u8", "", urlNow, ErrURLTokenSignature},
		{"padded base64", parts[0] + "." + parts[1] + "=." + parts[2], "/live/main/index.m3u8", "", urlNow, ErrURLTokenMalformed},
		{"std base64", parts[0] + "." + base64.StdEncoding.EncodeToString([]byte("\xff\xfe")) + "." + parts[2], "/live/main/index.m3u8", "", urlNow, ErrURLTokenMalformed},
		{"other version", "v2." + parts[1] + "." + parts[2], "/live/main/index.m3u8", "", urlNow, ErrURLTokenMalformed},
		{"no version", parts[1] + "." + parts[2], "/live/main/index.m3u8", "", urlNow, ErrURLTokenMalformed},
		{"extra part", tok + ".AAAA", "/live/main/index.m3u8", "", urlNow, ErrURLTokenMalformed},
		{"empty", "", "/live/main/index.m3u8", "", urlNow, ErrURLTokenMalformed},
		{"huge", "v1." + strings.Repeat("A", 5000) + "." + parts[2], "/live/main/index.m3u8", "", urlNow, ErrURLTokenMalformed},
		{"JWT-looking", "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", "/live/main/index.m3u8", "", urlNow, ErrURLTokenMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := s.Verify(tc.tok, tc.path, tc.ip, tc.now)
			if err == nil {
				t.Fatalf("accepted: %+v", g)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("err %v, want %v", err, tc.want)
			}
			if ErrorCode(err) != CodePermissionDenied {
				t.Errorf("code %q", ErrorCode(err))
			}
			if strings.Contains(err.Error(), tc.tok) && tc.tok != "" {
				t.Errorf("error text holds the token")
			}
		})
	}
}

func flipFirst(s string) string {
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func mustSign(t testing.TB, s *URLSigner, g Grant) string {
	t.Helper()
	tok, err := s.Sign(g)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestURLSignerSignRefusesBadGrants(t *testing.T) {
	s := testSigner(t, 1)
	exp := urlNow.Add(time.Hour)
	for name, g := range map[string]Grant{
		"no prefix":       {Expires: exp},
		"relative prefix": {Prefix: "live/main/", Expires: exp},
		"dot-dot prefix":  {Prefix: "/live/../main/", Expires: exp},
		"double slash":    {Prefix: "/live//main/", Expires: exp},
		"long prefix":     {Prefix: "/" + strings.Repeat("a", 600) + "/", Expires: exp},
		"no expiry":       {Prefix: "/live/main/"},
		"bad IP":          {Prefix: "/live/main/", Expires: exp, ClientIP: "example.com"},
		"negative height": {Prefix: "/live/main/", Expires: exp, MaxHeight: -1},
		"slash rendition": {Prefix: "/live/main/", Expires: exp, Renditions: []string{"a/b"}},
		"dot rendition":   {Prefix: "/live/main/", Expires: exp, Renditions: []string{".."}},
		"empty rendition": {Prefix: "/live/main/", Expires: exp, Renditions: []string{""}},
		"long subject":    {Prefix: "/live/main/", Expires: exp, Subject: strings.Repeat("u", 65), IssuedAt: urlNow},
		"subject, no iat": {Prefix: "/live/main/", Expires: exp, Subject: "u"},
	} {
		if tok, err := s.Sign(g); err == nil {
			t.Errorf("%s: signed %q", name, tok)
		}
	}
	if _, err := NewURLSigner(make([]byte, 31)); err == nil {
		t.Error("31-byte key accepted")
	}
}

func TestPathWithin(t *testing.T) {
	for _, tc := range []struct {
		p, prefix string
		want      bool
	}{
		{"/live/main/index.m3u8", "/live/main/", true},
		{"/live/main/index.m3u8", "/live/main", true},
		{"/live/main", "/live/main/", true},
		{"/live/mainly/index.m3u8", "/live/main/", false},
		{"/live/mainly/index.m3u8", "/live/main", false},
		{"/live/main/../x", "/live/main/", false},
		{"/live/main/./x", "/live/main/", false},
		{"/live/main\\x", "/live/main", false},
		{"/x", "/", true},
		{"/live/main/x", "/live/../live/main/", false},
	} {
		if got := PathWithin(tc.p, tc.prefix); got != tc.want {
			t.Errorf("PathWithin(%q, %q) = %v", tc.p, tc.prefix, got)
		}
	}
}

func TestURLSignerKeyStore(t *testing.T) {
	ks := URLSignerKeyStore{Dir: t.TempDir()}
	k1, created, err := ks.LoadOrCreate()
	if err != nil || !created || len(k1) < MinURLKeyLen {
		t.Fatalf("first: %d bytes, created %v, %v", len(k1), created, err)
	}
	fi, err := os.Stat(ks.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	if filepath.Base(ks.Path()) != "url_hmac.key" || filepath.Base(filepath.Dir(ks.Path())) != "auth" {
		t.Errorf("path %s", ks.Path())
	}
	k2, created, err := ks.LoadOrCreate()
	if err != nil || created || !bytes.Equal(k1, k2) {
		t.Fatalf("second: created %v, same %v, %v", created, bytes.Equal(k1, k2), err)
	}
	os.WriteFile(ks.Path(), []byte("c2hvcnQ=\n"), 0o600)
	if _, _, err := ks.LoadOrCreate(); err == nil || !strings.Contains(err.Error(), ks.Path()) {
		t.Errorf("short key file: %v", err)
	}
}

// FuzzURLTokenVerify: no input panics, and an accepted token is exactly
// the one Sign makes for the grant it carries (one grant, one token: no
// malleability from base64, varints or IP forms).
func FuzzURLTokenVerify(f *testing.F) {
	s := testSigner(f, 1)
	exp := urlNow.Add(time.Hour)
	for _, g := range []Grant{
		{Prefix: "/live/main/", Expires: exp},
		{Prefix: "/live/main/", Expires: exp, ClientIP: "192.0.2.7", MaxHeight: 720},
		{Prefix: "/vod/film", Expires: exp, ClientIP: "2001:db8::1", Renditions: []string{"r0", "r1"}},
	} {
		f.Add(mustSign(f, s, g), "/live/main/index.m3u8", "192.0.2.7")
	}
	f.Add("v1..", "/", "")
	f.Add("v1.AAAA.AAAA", "/live/main/x", "::1")
	f.Fuzz(func(t *testing.T, tok, path, ip string) {
		g, err := s.Verify(tok, path, ip, urlNow)
		if err != nil {
			return
		}
		again, err := s.Sign(g)
		if err != nil {
			t.Fatalf("accepted grant %+v does not sign: %v", g, err)
		}
		if again != tok {
			t.Fatalf("accepted %q, canonical token %q", tok, again)
		}
		if !PathWithin(path, g.Prefix) {
			t.Fatalf("accepted path %q outside %q", path, g.Prefix)
		}
	})
}

// FuzzURLTokenPayload: the payload parser never panics and accepts only
// canonical encodings.
func FuzzURLTokenPayload(f *testing.F) {
	for _, g := range []Grant{
		{Prefix: "/live/main/", Expires: urlNow},
		{Prefix: "/", Expires: urlNow, ClientIP: "::1", MaxHeight: 1080, Renditions: []string{"720p"}},
		{Prefix: "/vod/x/", Expires: urlNow, Subject: "0123456789abcdef", IssuedAt: urlNow.Add(-time.Millisecond)},
	} {
		b, err := encodeGrant(g)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := decodeGrant(b)
		if err != nil {
			return
		}
		again, err := encodeGrant(g)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("decoded %+v from %x, re-encodes to %x, %v", g, b, again, err)
		}
	})
}
