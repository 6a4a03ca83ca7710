package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/mail"
	"runtime"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id's cost parameters. They are written into every hash
// (PHC string format), so raising them later still verifies old hashes;
// Verify then reports that the hash should be redone.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes over the memory
	Threads uint8
	SaltLen uint32 // bytes
	KeyLen  uint32 // bytes
}

// DefaultParams is RFC 9106's second recommended setting (§4: 64 MiB,
// 3 passes, 4 lanes) with a 16-byte salt and a 32-byte tag. On a current
// core one hash takes ~50–100 ms: slow for a guesser, fine for a login.
var DefaultParams = Params{Memory: 64 * 1024, Time: 3, Threads: 4, SaltLen: 16, KeyLen: 32}

// Bounds on parameters read back from a stored hash: a damaged or planted
// hash must not make one login allocate gigabytes or spin for minutes.
const (
	maxMemory  = 1 << 20 // 1 GiB in KiB
	maxTime    = 64
	maxThreads = 64
	minSalt    = 8
	maxSalt    = 64
	minKey     = 16
	maxKey     = 128
)

// Hasher hashes and verifies passwords with argon2id. Each hash holds
// Params.Memory of RAM, so at most Concurrency run at once: a burst of
// logins queues instead of exhausting memory.
type Hasher struct {
	params Params
	sem    chan struct{}
}

// NewHasher returns a Hasher with p (the zero Params: DefaultParams) that
// runs at most concurrency hashes at once (<= 0: GOMAXPROCS).
func NewHasher(p Params, concurrency int) (*Hasher, error) {
	if p == (Params{}) {
		p = DefaultParams
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	if concurrency <= 0 {
		concurrency = runtime.GOMAXPROCS(0)
	}
	return &Hasher{params: p, sem: make(chan struct{}, concurrency)}, nil
}

func (p Params) check() error {
	switch {
	case p.Memory < 8*uint32(p.Threads) || p.Memory > maxMemory:
		return fmt.Errorf("argon2id: memory %d KiB (want 8×threads..%d)", p.Memory, maxMemory)
	case p.Time < 1 || p.Time > maxTime:
		return fmt.Errorf("argon2id: time %d (want 1..%d)", p.Time, maxTime)
	case p.Threads < 1 || p.Threads > maxThreads:
		return fmt.Errorf("argon2id: threads %d (want 1..%d)", p.Threads, maxThreads)
	case p.SaltLen < minSalt || p.SaltLen > maxSalt:
		return fmt.Errorf("argon2id: salt length %d (want %d..%d)", p.SaltLen, minSalt, maxSalt)
	case p.KeyLen < minKey || p.KeyLen > maxKey:
		return fmt.Errorf("argon2id: key length %d (want %d..%d)", p.KeyLen, minKey, maxKey)
	}
	return nil
}

func (h *Hasher) acquire(ctx context.Context) error {
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *Hasher) release() { <-h.sem }

// Hash returns the PHC string of password:
// $argon2id$v=19$m=65536,t=3,p=4$<salt>$<tag> (unpadded standard base64).
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, h.params.SaltLen)
	_, _ = rand.Read(salt)
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	tag := argon2.IDKey([]byte(password), salt, h.params.Time, h.params.Memory, h.params.Threads, h.params.KeyLen)
	return encodePHC(h.params, salt, tag), nil
}

func encodePHC(p Params, salt, tag []byte) string {
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(tag))
}

// ErrBadHash is returned by Verify for a stored hash it cannot read.
var ErrBadHash = errors.New("not an argon2id PHC string streamd can verify")

// ParsePHC reads an argon2id PHC string into its parameters, salt and tag,
// refusing parameters outside the bounds above.
func ParsePHC(s string) (p Params, salt, tag []byte, err error) {
	parts := strings.Split(s, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, tag
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, ErrBadHash
	}
	var seen [3]bool
	for kv := range strings.SplitSeq(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || v == "" || (len(v) > 1 && v[0] == '0') {
			return p, nil, nil, ErrBadHash
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return p, nil, nil, ErrBadHash
		}
		var i int
		switch k {
		case "m":
			i, p.Memory = 0, uint32(n)
		case "t":
			i, p.Time = 1, uint32(n)
		case "p":
			if n > maxThreads {
				return p, nil, nil, ErrBadHash
			}
			i, p.Threads = 2, uint8(n)
		default:
			return p, nil, nil, ErrBadHash
		}
		if seen[i] {
			return p, nil, nil, ErrBadHash
		}
		seen[i] = true
	}
	if seen != [3]bool{true, true, true} {
		return p, nil, nil, ErrBadHash
	}
	b64 := base64.RawStdEncoding.Strict()
	if salt, err = b64.DecodeString(parts[4]); err != nil {
		return p, nil, nil, ErrBadHash
	}
	if tag, err = b64.DecodeString(parts[5]); err != nil {
		return p, nil, nil, ErrBadHash
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(tag))
	if p.check() != nil {
		return p, nil, nil, ErrBadHash
	}
	return p, salt, tag, nil
}

// Verify reports whether password matches the PHC string encoded, in
// constant time; rehash is true when encoded was made with other
// parameters than the Hasher's (hash the password again and store it).
func (h *Hasher) Verify(ctx context.Context, encoded, password string) (ok, rehash bool, err error) {
	p, salt, tag, err := ParsePHC(encoded)
	if err != nil {
		return false, false, err
	}
	if err := h.acquire(ctx); err != nil {
		return false, false, err
	}
	defer h.release()
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	if subtle.ConstantTimeCompare(got, tag) != 1 {
		return false, false, nil
	}
	return true, p != h.params, nil
}

// dummyHash is verified against when a login names nobody, so that an
// unknown login takes as long as a wrong password.
func (h *Hasher) dummyHash() string {
	return encodePHC(h.params, make([]byte, h.params.SaltLen), make([]byte, h.params.KeyLen))
}

// Password policy, after NIST SP 800-63B §3.1.1.2: a minimum length, no
// composition rules, no password equal to the account's own names, none of
// the most common passwords; a maximum so hashing cannot be made costly.
const (
	MinPasswordLen = 10   // characters
	MaxPasswordLen = 1024 // bytes
)

var commonPasswords = map[string]bool{
	"1234567890": true, "12345678910": true, "123456789012": true, "qwertyuiop": true, "password123": true,
	"password1234": true, "iloveyou123": true, "0987654321": true, "1q2w3e4r5t": true, "qwerty123456": true,
	"1111111111": true, "0000000000": true, "passwordpassword": true, "letmein1234": true, "administrator": true,
}

// CheckPassword applies the policy; the error's message says what to fix
// and never repeats the password.
func CheckPassword(password, email, username string) error {
	n := utf8.RuneCountInString(password)
	switch {
	case !utf8.ValidString(password) || strings.ContainsRune(password, 0):
		return errorf(CodeInvalidArgument, "password: not valid UTF-8 or contains NUL")
	case n < MinPasswordLen:
		return errorf(CodeInvalidArgument, "password: at least %d characters", MinPasswordLen)
	case len(password) > MaxPasswordLen:
		return errorf(CodeInvalidArgument, "password: at most %d bytes", MaxPasswordLen)
	case commonPasswords[strings.ToLower(password)]:
		return errorf(CodeInvalidArgument, "password: one of the most common passwords; choose another")
	case strings.EqualFold(password, email) || strings.EqualFold(password, username):
		return errorf(CodeInvalidArgument, "password: must differ from your email and username")
	}
	return nil
}

// CheckEmail accepts a bare address (no display name, no comments).
func CheckEmail(email string) error {
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email || a.Name != "" || len(email) > 254 {
		return errorf(CodeInvalidArgument, "email: not a valid address (want e.g. ann@example.com, at most 254 bytes)")
	}
	return nil
}

// CheckUsername accepts 3–32 ASCII letters, digits, '.', '_' and '-',
// starting with a letter or digit: names that are safe in URLs, logs and
// chat mentions, and cannot look like an email.
func CheckUsername(username string) error {
	bad := len(username) < 3 || len(username) > 32
	for i, r := range username {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || (r != '.' && r != '_' && r != '-')) {
			bad = true
		}
	}
	if bad {
		return errorf(CodeInvalidArgument, "username: 3 to 32 of A-Z, a-z, 0-9, '.', '_', '-', starting with a letter or digit")
	}
	return nil
}
