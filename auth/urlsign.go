package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Signed playback URLs.
//
// A protected channel or asset is played with a token that the REST API
// issues (GET /api/streaming/{id}) and the origin checks on every request
// (query parameter st=). The token is an HMAC-SHA256, with a key only
// streamd's processes know, over a Grant: a path prefix, an expiry, and
// optionally the client's IP and the renditions the viewer's tier allows.
// No lookup is needed to check one, so any number of origins can check
// tokens at the live edge for the cost of one HMAC.
//
// Format: "v1." + base64url(payload) + "." + base64url(mac), unpadded;
// every character is URL-safe, so the token goes into a query unescaped.
// The payload is a canonical binary encoding of the grant (see
// encodeGrant); the MAC covers a domain-separation label and the payload
// bytes, and is checked (hmac.Equal) before anything in the payload is
// believed. A payload whose re-encoding differs from itself is refused, and
// base64 is decoded strictly, so one grant has exactly one token.

const (
	urlTokenVersion = "v1"
	// urlMACLabel separates these MACs from any other use of the key.
	urlMACLabel = "streamd url token v1\x00"
	// MinURLKeyLen is the shortest key URLSigner accepts.
	MinURLKeyLen = 32
	// maxURLTokenLen bounds what Verify looks at.
	maxURLTokenLen = 2048
	maxPrefixLen   = 512
	maxRenditions  = 32
	maxNameLen     = 64
	maxHeightLimit = 1 << 16
	maxSubjectLen  = 64
)

// Why a token was refused. Verify wraps them in an *Error with
// CodePermissionDenied; test with errors.Is. The origin tells the client
// nothing more than "invalid or expired".
var (
	ErrURLTokenMalformed = errors.New("malformed URL token")
	ErrURLTokenSignature = errors.New("URL token signature mismatch")
	ErrURLTokenExpired   = errors.New("URL token expired")
	ErrURLTokenPath      = errors.New("path outside the URL token's prefix")
	ErrURLTokenClient    = errors.New("URL token bound to another client IP")
)

// Grant is what a signed URL token allows.
type Grant struct {
	// Prefix is the absolute path the token opens, matched on whole path
	// elements: "/live/main/" (or "/live/main") opens /live/main/... but
	// not /live/mainly/.... Required.
	Prefix string
	// Expires is when the token stops working (whole seconds). Required.
	Expires time.Time
	// ClientIP, when set, binds the token to that client address (IPv4
	// or IPv6; an IPv4-mapped IPv6 address counts as the IPv4 one).
	ClientIP string
	// MaxHeight, when > 0, is the tier's limit on rendition size: the
	// origin removes taller renditions from the master playlist and
	// refuses their segments. It is compared with a rendition's short
	// side (its "p" number: 1080 for 1920x1080 and for a portrait
	// 1080x1920), as the ladders name them.
	MaxHeight int
	// Renditions, when not nil, lists the rendition folder names
	// ("720p", "r2") the token may play; the others are removed and
	// refused like taller ones. nil: no list.
	Renditions []string
	// Subject, when set, is the user the token was issued to, and
	// IssuedAt when (milliseconds): the origin refuses it once that
	// user's playback URLs are revoked after IssuedAt (log out
	// everywhere, a role change, a lower tier, a new password; see
	// PlaybackRevocations). Empty: the token cannot be revoked.
	Subject  string
	IssuedAt time.Time
}

// URLSigner signs and checks playback URL tokens. It is safe for
// concurrent use.
type URLSigner struct {
	key []byte
}

// NewURLSigner returns a signer with key (at least MinURLKeyLen random
// bytes; every process that signs or checks tokens needs the same key).
func NewURLSigner(key []byte) (*URLSigner, error) {
	if len(key) < MinURLKeyLen {
		return nil, fmt.Errorf("URL signing key: %d bytes, want at least %d", len(key), MinURLKeyLen)
	}
	return &URLSigner{key: bytes.Clone(key)}, nil
}

// Sign returns the token for g. It fails only for a grant that could never
// be verified (no or unclean prefix, no expiry, bad IP, bad names).
func (s *URLSigner) Sign(g Grant) (string, error) {
	payload, err := encodeGrant(g)
	if err != nil {
		return "", fmt.Errorf("URL token: %w", err)
	}
	return urlTokenVersion + "." + b64.EncodeToString(payload) + "." + b64.EncodeToString(s.mac(payload)), nil
}

// Verify checks token for a request of path (absolute, as in the URL,
// e.g. "/live/main/720p/index.m3u8") from clientIP at now, and returns
// the grant. Any failure is an *Error with CodePermissionDenied whose Err
// is one of the ErrURLToken* values.
func (s *URLSigner) Verify(token, path, clientIP string, now time.Time) (Grant, error) {
	fail := func(err error) (Grant, error) {
		return Grant{}, &Error{Code: CodePermissionDenied, Message: "invalid or expired playback token", Err: err}
	}
	if len(token) > maxURLTokenLen {
		return fail(ErrURLTokenMalformed)
	}
	ver, rest, ok1 := strings.Cut(token, ".")
	p64, m64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || ver != urlTokenVersion {
		return fail(ErrURLTokenMalformed)
	}
	payload, err1 := b64.DecodeString(p64)
	mac, err2 := b64.DecodeString(m64)
	if err1 != nil || err2 != nil || len(mac) != sha256.Size {
		return fail(ErrURLTokenMalformed)
	}
	if !hmac.Equal(mac, s.mac(payload)) {
		return fail(ErrURLTokenSignature)
	}
	g, err := decodeGrant(payload)
	if err != nil {
		// Only a bug (or a leaked key) gets here: the MAC was ours.
		return fail(fmt.Errorf("%w: %v", ErrURLTokenMalformed, err))
	}
	if !now.Before(g.Expires) {
		return fail(ErrURLTokenExpired)
	}
	if !PathWithin(path, g.Prefix) {
		return fail(ErrURLTokenPath)
	}
	if g.ClientIP != "" {
		want, _ := parseIP(g.ClientIP)
		got, err := parseIP(clientIP)
		if err != nil || got != want {
			return fail(ErrURLTokenClient)
		}
	}
	return g, nil
}

func (s *URLSigner) mac(payload []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(urlMACLabel))
	m.Write(payload)
	return m.Sum(nil)
}

// b64 is unpadded base64url, strict: non-canonical trailing bits are
// refused, so no two strings decode to the same bytes.
var b64 = base64.RawURLEncoding.Strict()

// PathWithin reports whether the absolute path p lies under prefix, on
// whole path elements: "/live/main/" and "/live/main" both contain
// "/live/main/x" (and "/live/main" itself) but not "/live/mainly/x". A p
// with empty, "." or ".." elements is never within anything, so a caller
// that forgot to clean its path fails closed.
func PathWithin(p, prefix string) bool {
	if !cleanAbs(p) || !cleanAbs(prefix) {
		return false
	}
	pre := strings.TrimSuffix(prefix, "/")
	if pre == "" { // "/"
		return true
	}
	return p == pre || strings.HasPrefix(p, pre+"/")
}

// cleanAbs: absolute, no empty (except a trailing slash), "." or ".."
// elements, no backslashes or control characters.
func cleanAbs(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\") {
		return false
	}
	if strings.ContainsFunc(p, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
		return false
	}
	if p == "/" {
		return true
	}
	for _, el := range strings.Split(strings.TrimSuffix(p[1:], "/"), "/") {
		if el == "" || el == "." || el == ".." {
			return false
		}
	}
	return true
}

func parseIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	return a.WithZone("").Unmap(), nil
}

// encodeGrant writes the payload:
//
//	uvarint  expiry, Unix seconds
//	uvarint  len(prefix), prefix bytes
//	byte     len(ip) (0, 4 or 16), ip bytes
//	uvarint  max height (0: none)
//	uvarint  0 (no rendition list) or 1+count, then per name uvarint len, bytes
//	and only with a subject:
//	uvarint  issued at, Unix milliseconds
//	uvarint  len(subject), subject bytes
func encodeGrant(g Grant) ([]byte, error) {
	if len(g.Prefix) > maxPrefixLen || !cleanAbs(g.Prefix) {
		return nil, fmt.Errorf("prefix %q: want a clean absolute path of at most %d bytes", g.Prefix, maxPrefixLen)
	}
	if g.Expires.Unix() <= 0 {
		return nil, errors.New("no expiry")
	}
	var ip []byte
	if g.ClientIP != "" {
		a, err := parseIP(g.ClientIP)
		if err != nil {
			return nil, fmt.Errorf("client IP: %w", err)
		}
		ip = a.AsSlice()
	}
	if g.MaxHeight < 0 || g.MaxHeight > maxHeightLimit {
		return nil, fmt.Errorf("max height %d out of range", g.MaxHeight)
	}
	if len(g.Renditions) > maxRenditions {
		return nil, fmt.Errorf("%d renditions, at most %d", len(g.Renditions), maxRenditions)
	}
	b := make([]byte, 0, 32+len(g.Prefix))
	b = binary.AppendUvarint(b, uint64(g.Expires.Unix()))
	b = binary.AppendUvarint(b, uint64(len(g.Prefix)))
	b = append(b, g.Prefix...)
	b = append(b, byte(len(ip)))
	b = append(b, ip...)
	b = binary.AppendUvarint(b, uint64(g.MaxHeight))
	if g.Renditions == nil {
		b = binary.AppendUvarint(b, 0)
	} else {
		b = binary.AppendUvarint(b, uint64(len(g.Renditions))+1)
		for _, n := range g.Renditions {
			if n == "" || len(n) > maxNameLen || !cleanAbs("/"+n) || strings.Contains(n, "/") {
				return nil, fmt.Errorf("rendition name %q: want one path element of at most %d bytes", n, maxNameLen)
			}
			b = binary.AppendUvarint(b, uint64(len(n)))
			b = append(b, n...)
		}
	}
	if g.Subject != "" {
		if len(g.Subject) > maxSubjectLen || g.IssuedAt.UnixMilli() <= 0 {
			return nil, fmt.Errorf("subject: at most %d bytes, with an issue time", maxSubjectLen)
		}
		b = binary.AppendUvarint(b, uint64(g.IssuedAt.UnixMilli()))
		b = binary.AppendUvarint(b, uint64(len(g.Subject)))
		b = append(b, g.Subject...)
	}
	return b, nil
}

// decodeGrant parses a payload strictly: every length bounded, nothing
// left over, and the bytes must be exactly what encodeGrant writes for the
// result (no non-minimal varints, no IPv4-mapped addresses).
func decodeGrant(b []byte) (Grant, error) {
	d := decoder{b: b}
	var g Grant
	exp := d.uvarint()
	if exp == 0 || exp > 1<<40 {
		return Grant{}, errors.New("bad expiry")
	}
	g.Expires = time.Unix(int64(exp), 0)
	g.Prefix = string(d.bytes(maxPrefixLen))
	switch n := d.byte(); n {
	case 0:
	case 4, 16:
		ip, _ := netip.AddrFromSlice(d.take(int(n)))
		g.ClientIP = ip.String()
	default:
		d.err = errors.New("bad IP length")
	}
	h := d.uvarint()
	if h > maxHeightLimit {
		d.err = errors.New("bad max height")
	}
	g.MaxHeight = int(h)
	switch n := d.uvarint(); {
	case n == 0:
	case n-1 > maxRenditions:
		d.err = errors.New("too many renditions")
	default:
		g.Renditions = make([]string, 0, n-1)
		for range n - 1 {
			g.Renditions = append(g.Renditions, string(d.bytes(maxNameLen)))
		}
	}
	if d.err == nil && len(d.b) != 0 { // the optional subject
		iat := d.uvarint()
		if iat == 0 || iat > 1<<50 {
			d.err = errors.New("bad issue time")
		}
		g.IssuedAt = time.UnixMilli(int64(iat))
		g.Subject = string(d.bytes(maxSubjectLen))
		if d.err == nil && g.Subject == "" {
			d.err = errors.New("empty subject")
		}
	}
	if d.err != nil {
		return Grant{}, d.err
	}
	if len(d.b) != 0 {
		return Grant{}, errors.New("trailing bytes")
	}
	again, err := encodeGrant(g)
	if err != nil {
		return Grant{}, err
	}
	if !bytes.Equal(again, b) {
		return Grant{}, errors.New("non-canonical encoding")
	}
	return g, nil
}

// decoder reads the payload; after the first error every read returns
// zero values and err stays set.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errors.New("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if b := d.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = errors.New("truncated")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(limit int) []byte {
	n := d.uvarint()
	if d.err == nil && n > uint64(limit) {
		d.err = errors.New("field too long")
		return nil
	}
	return d.take(int(n))
}

// URLSignerKeyStore keeps the generated URL signing key as
// Dir/auth/url_hmac.key (mode 0600): 32 random bytes, base64 (standard,
// padded) on one line, the same form a key set in the config takes.
// Every process that issues (API) or checks (origin) tokens must share it.
type URLSignerKeyStore struct {
	Dir string
}

// Path is the key file.
func (k URLSignerKeyStore) Path() string { return filepath.Join(k.Dir, "auth", "url_hmac.key") }

// LoadOrCreate returns the stored key, generating and storing one the
// first time; created reports whether it was generated now.
func (k URLSignerKeyStore) LoadOrCreate() (key []byte, created bool, err error) {
	p := k.Path()
	b, err := os.ReadFile(p)
	if err == nil {
		key, err := ParseURLSigningKey(b)
		if err != nil {
			return nil, false, fmt.Errorf("URL signing key file %s: %w (delete it to generate a new key; every signed playback URL will stop working)", p, err)
		}
		return key, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("data_dir: reading URL signing key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, false, fmt.Errorf("data_dir: %w", err)
	}
	key = make([]byte, MinURLKeyLen)
	_, _ = rand.Read(key) // crypto/rand.Read never fails on supported platforms
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, false, fmt.Errorf("data_dir: storing URL signing key: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return nil, false, fmt.Errorf("data_dir: storing URL signing key: %w", err)
	}
	return key, true, nil
}

// ParseURLSigningKey reads a key as the key file or the config holds it:
// standard base64 (e.g. `openssl rand -base64 32`) of at least
// MinURLKeyLen bytes; surrounding white space is ignored.
func ParseURLSigningKey(b []byte) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, errors.New("not base64 (generate one with `openssl rand -base64 32`)")
	}
	if len(key) < MinURLKeyLen {
		return nil, fmt.Errorf("%d bytes, want at least %d", len(key), MinURLKeyLen)
	}
	return key, nil
}
