package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/streamd/streamd/store"
)

// Access tokens are JWTs signed with EdDSA (Ed25519), and nothing else is
// accepted. Why EdDSA rather than HS256: the processes that only check
// tokens (origin, other API replicas) can be given the public key alone and
// then cannot mint tokens; and one fixed asymmetric algorithm leaves no
// room for the HMAC-with-the-public-key confusion. Signing and checking
// are both fast (tens of µs).
const accessAlg = "EdDSA"

// maxTokenLen bounds what is handed to the JWT parser.
const maxTokenLen = 4096

// JWTKeyStore keeps the generated signing key as Dir/auth/jwt_ed25519.pem
// (PKCS #8 PEM, mode 0600), like KeyStore keeps stream keys. Several
// processes sharing a deployment must share this key (or have it set in
// the config).
type JWTKeyStore struct {
	Dir string
}

// Path is the key file.
func (k JWTKeyStore) Path() string { return filepath.Join(k.Dir, "auth", "jwt_ed25519.pem") }

// LoadOrCreate returns the stored key, generating and storing one the
// first time; created reports whether it was generated now.
func (k JWTKeyStore) LoadOrCreate() (key ed25519.PrivateKey, created bool, err error) {
	p := k.Path()
	b, err := os.ReadFile(p)
	if err == nil {
		key, err := ParseSigningKey(b)
		if err != nil {
			return nil, false, fmt.Errorf("JWT key file %s: %w (delete it to generate a new key; everyone will have to log in again)", p, err)
		}
		return key, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("data_dir: reading JWT key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, false, fmt.Errorf("data_dir: %w", err)
	}
	_, key, _ = ed25519.GenerateKey(rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, false, err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, false, fmt.Errorf("data_dir: storing JWT key: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return nil, false, fmt.Errorf("data_dir: storing JWT key: %w", err)
	}
	return key, true, nil
}

// ParseSigningKey reads an Ed25519 private key in PKCS #8 PEM, what
// `openssl genpkey -algorithm ed25519` writes (for a key set in the config).
func ParseSigningKey(b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM \"PRIVATE KEY\" block (want PKCS #8, e.g. from `openssl genpkey -algorithm ed25519`)")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, errors.New("not a PKCS #8 private key")
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, want an Ed25519 key", k)
	}
	return ek, nil
}

// Principal is who a request acts for, as an access token says.
type Principal struct {
	UserID    string
	SessionID string
	Role      store.Role
	Tier      store.Tier
}

// accessClaims are the access token's claims: the registered ones (iss,
// aud, sub, exp, iat, jti) plus role, tier and the refresh session (sid)
// the token was issued under, so that logging out revokes it at once.
type accessClaims struct {
	jwt.RegisteredClaims
	Role      store.Role `json:"role"`
	Tier      store.Tier `json:"tier"`
	SessionID string     `json:"sid"`
}

// TokenConfig sets the access token's claims and lifetime.
type TokenConfig struct {
	Issuer   string        // default "streamd"
	Audience string        // default "streamd-api"
	TTL      time.Duration // default 15 min
	// Leeway is the clock skew allowed between processes (default 10 s).
	Leeway time.Duration
	// Now is the clock (default time.Now); tests may stub it.
	Now func() time.Time
}

// Tokens issues and checks access JWTs.
type Tokens struct {
	cfg    TokenConfig
	key    ed25519.PrivateKey
	pub    ed25519.PublicKey
	kid    string
	parser *jwt.Parser
}

// NewTokens returns Tokens signing with key.
func NewTokens(key ed25519.PrivateKey, cfg TokenConfig) (*Tokens, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("JWT signing key: not an Ed25519 private key")
	}
	if cfg.Issuer == "" {
		cfg.Issuer = "streamd"
	}
	if cfg.Audience == "" {
		cfg.Audience = "streamd-api"
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 15 * time.Minute
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pub := key.Public().(ed25519.PublicKey)
	sum := sha256.Sum256(pub)
	return &Tokens{
		cfg: cfg, key: key, pub: pub, kid: hex.EncodeToString(sum[:8]),
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{accessAlg}),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(cfg.Leeway),
			jwt.WithTimeFunc(cfg.Now),
		),
	}, nil
}

// TTL is the access token lifetime.
func (t *Tokens) TTL() time.Duration { return t.cfg.TTL }

// Issue signs an access token for p.
func (t *Tokens) Issue(p Principal) (string, error) {
	now := t.cfg.Now()
	c := accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.cfg.Issuer,
			Subject:   p.UserID,
			Audience:  jwt.ClaimStrings{t.cfg.Audience},
			ExpiresAt: jwt.NewNumericDate(now.Add(t.cfg.TTL)),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        store.NewID(),
		},
		Role: p.Role, Tier: p.Tier, SessionID: p.SessionID,
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	tok.Header["kid"] = t.kid
	return tok.SignedString(t.key)
}

// Verify checks an access token's signature, algorithm, issuer, audience
// and times, and returns its principal. Every failure is the same
// CodeUnauthenticated error: the reason goes to Err, for logs.
func (t *Tokens) Verify(token string) (Principal, error) {
	fail := func(err error) (Principal, error) {
		return Principal{}, &Error{Code: CodeUnauthenticated, Message: "invalid or expired access token", Err: err}
	}
	if len(token) > maxTokenLen {
		return fail(errors.New("token too long"))
	}
	var c accessClaims
	_, err := t.parser.ParseWithClaims(token, &c, func(tok *jwt.Token) (any, error) {
		// WithValidMethods already refuses other algorithms; checking the
		// method's type too keeps this safe if that option is ever lost.
		if _, ok := tok.Method.(*jwt.SigningMethodEd25519); !ok {
			return nil, fmt.Errorf("unexpected signing method %v", tok.Header["alg"])
		}
		return t.pub, nil
	})
	if err != nil {
		return fail(err)
	}
	if c.Subject == "" || c.SessionID == "" || !c.Role.Valid() || !c.Tier.Valid() {
		return fail(errors.New("token lacks sub, sid, role or tier"))
	}
	return Principal{UserID: c.Subject, SessionID: c.SessionID, Role: c.Role, Tier: c.Tier}, nil
}
