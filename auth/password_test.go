package auth

import (
	"context"
	"strings"
	"testing"
)

// cheap are test parameters: the code path is the same, the cost is not.
var cheap = Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func TestHashVerify(t *testing.T) {
	ctx := context.Background()
	h, err := NewHasher(cheap, 2)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := h.Hash(ctx, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=1024,t=1,p=1$") || strings.Contains(enc, "correct") {
		t.Fatalf("hash = %q", enc)
	}
	again, _ := h.Hash(ctx, "correct horse battery")
	if again == enc {
		t.Fatal("two hashes of one password are equal: no salt?")
	}
	if ok, rehash, err := h.Verify(ctx, enc, "correct horse battery"); !ok || rehash || err != nil {
		t.Fatalf("verify right = %v %v %v", ok, rehash, err)
	}
	if ok, _, err := h.Verify(ctx, enc, "correct horse batterY"); ok || err != nil {
		t.Fatalf("verify wrong = %v %v", ok, err)
	}
	stronger, _ := NewHasher(Params{Memory: 2048, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}, 1)
	if ok, rehash, _ := stronger.Verify(ctx, enc, "correct horse battery"); !ok || !rehash {
		t.Fatalf("old parameters: ok=%v rehash=%v, want true true", ok, rehash)
	}
	// A known vector (argon2id, RFC 9106 parameters aside): hash made by
	// this code must be readable by any PHC implementation, so check the
	// shape field by field.
	p, salt, tag, err := ParsePHC(enc)
	if err != nil || p != cheap || len(salt) != 16 || len(tag) != 32 {
		t.Fatalf("parse = %+v %d %d %v", p, len(salt), len(tag), err)
	}
	if _, err := NewHasher(Params{Memory: 1, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, 1); err == nil {
		t.Fatal("no error for 1 KiB of memory")
	}
}

func TestParsePHCRefuses(t *testing.T) {
	good := "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
	if _, _, _, err := ParsePHC(good); err != nil {
		t.Fatalf("good: %v", err)
	}
	for _, bad := range []string{
		"", "$argon2i$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
		"$argon2id$v=16$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
		"$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g", // 4 TiB
		"$argon2id$v=19$m=1024,t=100000,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
		"$argon2id$v=19$m=1024,t=1,p=0$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
		"$argon2id$v=19$m=1024,t=1,p=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
		"$argon2id$v=19$m=1024,t=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
		"$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g", // 4-byte salt
		"$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA==$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
		"$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaA",
		"$argon2id$v=19$m=01024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
		"$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy", // bcrypt
	} {
		if _, _, _, err := ParsePHC(bad); err == nil {
			t.Errorf("ParsePHC(%q) accepted", bad)
		}
	}
}

func FuzzParsePHC(f *testing.F) {
	f.Add("$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g")
	f.Add("$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA")
	f.Add("$argon2id$v=19$t=1,m=8,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, s string) {
		p, salt, tag, err := ParsePHC(s)
		if err != nil {
			return
		}
		if p.check() != nil || int(p.SaltLen) != len(salt) || int(p.KeyLen) != len(tag) {
			t.Fatalf("accepted out-of-bounds parameters %+v from %q", p, s)
		}
		// What parses re-encodes to a string that parses the same.
		p2, salt2, tag2, err := ParsePHC(encodePHC(p, salt, tag))
		if err != nil || p2 != p || string(salt2) != string(salt) || string(tag2) != string(tag) {
			t.Fatalf("re-encoding %q: %v", s, err)
		}
	})
}

func TestPolicy(t *testing.T) {
	for pw, ok := range map[string]bool{
		"short":                   false,
		"1234567890":              false, // common
		"ann@example.com":         false, // the email
		"a good long passphrase":  true,
		"ünïcödé-pässwörd":        true,
		strings.Repeat("x", 1025): false,
		"with\x00nul-byte":        false,
	} {
		if err := CheckPassword(pw, "ann@example.com", "ann"); (err == nil) != ok {
			t.Errorf("CheckPassword(%.20q) = %v, want ok=%v", pw, err, ok)
		}
	}
	for name, ok := range map[string]bool{"ann": true, "a.b-c_d": true, "an": false, "-ann": false, "ann'; --": false, "ann@x": false} {
		if err := CheckUsername(name); (err == nil) != ok {
			t.Errorf("CheckUsername(%q) = %v", name, err)
		}
	}
	for email, ok := range map[string]bool{"ann@example.com": true, "Ann <ann@example.com>": false, "nope": false, "a@b'; DROP": false} {
		if err := CheckEmail(email); (err == nil) != ok {
			t.Errorf("CheckEmail(%q) = %v", email, err)
		}
	}
}
