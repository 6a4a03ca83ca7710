package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestJWTKeyStore(t *testing.T) {
	ks := JWTKeyStore{Dir: t.TempDir()}
	k1, created, err := ks.LoadOrCreate()
	if err != nil || !created {
		t.Fatalf("first: %v created=%v", err, created)
	}
	fi, err := os.Stat(ks.Path())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	k2, created, err := ks.LoadOrCreate()
	if err != nil || created || !k1.Equal(k2) {
		t.Fatalf("second load: %v created=%v equal=%v", err, created, k1.Equal(k2))
	}
	if err := os.WriteFile(ks.Path(), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ks.LoadOrCreate(); err == nil {
		t.Fatal("no error for a damaged key file")
	}
}

// Forged tokens: every one must be refused. The API tests run the same
// over HTTP; these name the parser's reason.
func TestVerifyRefuses(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	tk, err := NewTokens(key, TokenConfig{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	p := Principal{UserID: "u1", SessionID: "s1", Role: "viewer", Tier: "free"}
	good, _ := tk.Issue(p)
	if got, err := tk.Verify(good); err != nil || got != p {
		t.Fatalf("good token: %+v %v", got, err)
	}
	claims := func(mut func(*accessClaims)) *accessClaims {
		c := &accessClaims{RegisteredClaims: jwt.RegisteredClaims{Issuer: "streamd", Subject: "u1",
			Audience: jwt.ClaimStrings{"streamd-api"}, IssuedAt: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute))}, Role: "viewer", Tier: "free", SessionID: "s1"}
		if mut != nil {
			mut(c)
		}
		return c
	}
	sign := func(m jwt.SigningMethod, k any, c *accessClaims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pub := key.Public().(ed25519.PublicKey)
	for name, tok := range map[string]string{
		"alg none":           sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil)),
		"HS256 with pub key": sign(jwt.SigningMethodHS256, []byte(pub), claims(nil)),
		"HS256 other secret": sign(jwt.SigningMethodHS256, []byte("secret"), claims(nil)),
		"RS256":              sign(jwt.SigningMethodRS256, rsaKey, claims(nil)),
		"wrong key":          sign(jwt.SigningMethodEdDSA, other, claims(nil)),
		"expired":            sign(jwt.SigningMethodEdDSA, key, claims(func(c *accessClaims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Minute)) })),
		"no exp":             sign(jwt.SigningMethodEdDSA, key, claims(func(c *accessClaims) { c.ExpiresAt = nil })),
		"issued in future":   sign(jwt.SigningMethodEdDSA, key, claims(func(c *accessClaims) { c.IssuedAt = jwt.NewNumericDate(now.Add(time.Hour)) })),
		"other issuer":       sign(jwt.SigningMethodEdDSA, key, claims(func(c *accessClaims) { c.Issuer = "evil" })),
		"other audience":     sign(jwt.SigningMethodEdDSA, key, claims(func(c *accessClaims) { c.Audience = jwt.ClaimStrings{"origin"} })),
		"no sid":             sign(jwt.SigningMethodEdDSA, key, claims(func(c *accessClaims) { c.SessionID = "" })),
		"unknown role":       sign(jwt.SigningMethodEdDSA, key, claims(func(c *accessClaims) { c.Role = "root" })),
		"role escalated":     escalate(t, good),
		"garbage":            "a.b.c",
		"empty":              "",
		"too long":           strings.Repeat("a", 5000),
	} {
		if _, err := tk.Verify(tok); ErrorCode(err) != CodeUnauthenticated {
			t.Errorf("%s: Verify = %v, want unauthenticated", name, err)
		}
	}
}

// escalate rewrites a token's payload to role admin, keeping the header
// and signature.
func escalate(t *testing.T, tok string) string {
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	changed := bytes.Replace(payload, []byte(`"role":"viewer"`), []byte(`"role":"admin"`), 1)
	if bytes.Equal(changed, payload) {
		t.Fatalf("no role claim in %s", payload)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(changed)
	return strings.Join(parts, ".")
}
