package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"image/png"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/streamd/streamd/store"
)

// totpOpts are what every authenticator app understands: SHA-1, 6 digits,
// 30 s, and one step of clock skew either side.
var totpOpts = totp.ValidateOpts{Period: 30, Skew: 1, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// RecoveryCodes is how many single-use codes ConfirmMFA hands out.
const RecoveryCodes = 10

// Enrollment is a new TOTP secret for the user to add to an app (as a QR
// code of URL, or by typing Secret).
type Enrollment struct {
	Secret string
	URL    string // otpauth://totp/...
	// QRPNG is URL as a QR code, a 256×256 PNG, for a page to show.
	QRPNG []byte
}

// qrSize is the QR image's side in pixels: big enough for a phone camera
// at arm's length, small enough to send inline.
const qrSize = 256

// EnrollMFA starts (or restarts) enrollment. It does not turn MFA on:
// ConfirmMFA does, once the user proves the app has the secret. An
// account whose MFA is on must disable it first (with a code).
func (s *Service) EnrollMFA(ctx context.Context, userID string) (Enrollment, error) {
	u, err := s.users.GetUser(ctx, userID)
	if err != nil {
		return Enrollment{}, s.storeErr(err)
	}
	m, err := s.users.GetMFA(ctx, userID)
	if err == nil && !m.ConfirmedAt.IsZero() {
		return Enrollment{}, errorf(CodeConflict, "MFA is already on; disable it first")
	}
	if err != nil && !isNotFound(err) {
		return Enrollment{}, s.storeErr(err)
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: s.cfg.TOTPIssuer, AccountName: u.Username,
		Period: totpOpts.Period, Digits: totpOpts.Digits, Algorithm: totpOpts.Algorithm})
	if err != nil {
		return Enrollment{}, &Error{Code: CodeInternal, Message: "internal error", Err: err}
	}
	if err := s.users.SetMFA(ctx, userID, store.MFA{Secret: key.Secret()}); err != nil {
		return Enrollment{}, s.storeErr(err)
	}
	img, err := key.Image(qrSize, qrSize)
	if err != nil {
		return Enrollment{}, &Error{Code: CodeInternal, Message: "internal error", Err: err}
	}
	var qr bytes.Buffer
	if err := png.Encode(&qr, img); err != nil {
		return Enrollment{}, &Error{Code: CodeInternal, Message: "internal error", Err: err}
	}
	s.log.Info("MFA enrollment started", "user", userID)
	return Enrollment{Secret: key.Secret(), URL: key.URL(), QRPNG: qr.Bytes()}, nil
}

func errBadCode() *Error { return errorf(CodeUnauthenticated, "wrong or already used code") }

// ConfirmMFA turns MFA on when code is the app's current code, and returns
// the recovery codes: shown once, stored only as hashes.
func (s *Service) ConfirmMFA(ctx context.Context, userID, code string) ([]string, error) {
	m, err := s.users.GetMFA(ctx, userID)
	if isNotFound(err) {
		return nil, errorf(CodeNotFound, "no MFA enrollment; start one first")
	}
	if err != nil {
		return nil, s.storeErr(err)
	}
	if !m.ConfirmedAt.IsZero() {
		return nil, errorf(CodeConflict, "MFA is already on")
	}
	if ok, err := s.checkTOTP(ctx, userID, m.Secret, code); err != nil {
		return nil, err
	} else if !ok {
		return nil, errBadCode()
	}
	codes := make([]string, RecoveryCodes)
	m.RecoveryCodes = make([]string, RecoveryCodes)
	for i := range codes {
		codes[i] = newRecoveryCode()
		m.RecoveryCodes[i] = tokenKey(normalizeRecovery(codes[i]))
	}
	m.ConfirmedAt = s.now()
	if err := s.users.SetMFA(ctx, userID, m); err != nil {
		return nil, s.storeErr(err)
	}
	s.log.Info("MFA turned on", "user", userID)
	return codes, nil
}

// DisableMFA turns MFA off; code is a current TOTP code or a recovery code.
func (s *Service) DisableMFA(ctx context.Context, userID, code string) error {
	m, err := s.users.GetMFA(ctx, userID)
	if isNotFound(err) {
		return errorf(CodeNotFound, "MFA is not on")
	}
	if err != nil {
		return s.storeErr(err)
	}
	if !m.ConfirmedAt.IsZero() {
		// A stolen access token must not become a way to guess the
		// second factor: wrong codes here count like wrong logins.
		if err := s.checkSecondFactor(ctx, userID, m, code); err != nil {
			return err
		}
	}
	s.log.Info("MFA turned off", "user", userID)
	return s.storeErr(s.users.DeleteMFA(ctx, userID))
}

// VerifyMFA answers a login's MFA challenge with a TOTP or recovery code.
// A challenge allows MFAAttempts tries and one success.
func (s *Service) VerifyMFA(ctx context.Context, mfaToken, code string) (TokenPair, error) {
	bad := errorf(CodeUnauthenticated, "invalid or expired MFA challenge")
	if mfaToken == "" || len(mfaToken) > 256 {
		return TokenPair{}, bad
	}
	h := tokenKey(mfaToken)
	b, err := s.sessions.Get(ctx, "auth:mfa_challenge:"+h)
	if isNotFound(err) {
		return TokenPair{}, bad
	}
	if err != nil {
		return TokenPair{}, s.storeErr(err)
	}
	uid := string(b)
	n, err := s.sessions.Incr(ctx, "auth:mfa_attempts:"+h, s.cfg.MFAChallengeTTL)
	if err != nil {
		return TokenPair{}, s.storeErr(err)
	}
	if n > int64(s.cfg.MFAAttempts) {
		_ = s.sessions.Delete(ctx, "auth:mfa_challenge:"+h)
		return TokenPair{}, bad
	}
	m, err := s.users.GetMFA(ctx, uid)
	if err != nil {
		return TokenPair{}, s.storeErr(err)
	}
	if err := s.checkSecondFactor(ctx, uid, m, code); err != nil {
		return TokenPair{}, err
	}
	// One success per challenge, even when two answers race.
	if won, err := s.sessions.Incr(ctx, "auth:mfa_done:"+h, s.cfg.MFAChallengeTTL); err != nil {
		return TokenPair{}, s.storeErr(err)
	} else if won > 1 {
		return TokenPair{}, bad
	}
	if err := s.sessions.Delete(ctx, "auth:mfa_challenge:"+h); err != nil {
		return TokenPair{}, s.storeErr(err)
	}
	// The whole login succeeded: only now are earlier failures forgiven
	// (see Login).
	if err := s.sessions.Delete(ctx, "auth:fail:"+userLockKey(uid)); err != nil {
		return TokenPair{}, s.storeErr(err)
	}
	u, err := s.users.GetUser(ctx, uid)
	if err != nil {
		return TokenPair{}, s.storeErr(err)
	}
	return s.startSession(ctx, u)
}

// checkSecondFactor answers a code for the account's MFA. A challenge's
// own limit (MFAAttempts) is not enough: whoever knows the password gets
// a new challenge with every login, 5 more guesses each time. So a wrong
// code counts towards the account's login lockout, like a wrong
// password, and a locked account has no code checked at all.
func (s *Service) checkSecondFactor(ctx context.Context, uid string, m store.MFA, code string) error {
	key := userLockKey(uid)
	if left, err := s.locked(ctx, key); err != nil {
		return err
	} else if left > 0 {
		return &Error{Code: CodeRateLimited, Message: "too many failed attempts; try again later", RetryAfter: left}
	}
	ok, err := s.secondFactor(ctx, uid, m, code)
	if err != nil {
		return err
	}
	if !ok {
		if err := s.failed(ctx, key); err != nil {
			return err
		}
		s.log.Info("wrong second factor", "user", uid)
		return errBadCode()
	}
	return nil
}

// secondFactor checks a TOTP code (6 digits) or else a recovery code.
func (s *Service) secondFactor(ctx context.Context, uid string, m store.MFA, code string) (bool, error) {
	code = strings.TrimSpace(code)
	if len(code) == int(totpOpts.Digits) && strings.Trim(code, "0123456789") == "" {
		return s.checkTOTP(ctx, uid, m.Secret, code)
	}
	if len(code) > 64 {
		return false, nil
	}
	err := s.users.UseRecoveryCode(ctx, uid, tokenKey(normalizeRecovery(code)))
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, s.storeErr(err)
	}
	s.log.Warn("recovery code used", "user", uid)
	return true, nil
}

// checkTOTP validates code and refuses a code already accepted for this
// user within its validity (a replayed or shoulder-surfed code).
func (s *Service) checkTOTP(ctx context.Context, uid, secret, code string) (bool, error) {
	ok, err := totp.ValidateCustom(code, secret, s.now(), totpOpts)
	if err != nil && !errors.Is(err, otp.ErrValidateInputInvalidLength) {
		return false, &Error{Code: CodeInternal, Message: "internal error", Err: err}
	}
	if !ok {
		return false, nil
	}
	// The key holds no code in clear: the hash of user and code.
	window := time.Duration(totpOpts.Period*(2*totpOpts.Skew+1)) * time.Second
	n, err := s.sessions.Incr(ctx, "auth:totp_used:"+tokenKey(uid+":"+code), window)
	if err != nil {
		return false, s.storeErr(err)
	}
	return n == 1, nil
}

var recoveryEnc = base32.StdEncoding.WithPadding(base32.NoPadding)

// newRecoveryCode returns 80 random bits as xxxx-xxxx-xxxx-xxxx.
func newRecoveryCode() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	s := strings.ToLower(recoveryEnc.EncodeToString(b[:]))
	return s[0:4] + "-" + s[4:8] + "-" + s[8:12] + "-" + s[12:16]
}

// normalizeRecovery forgives case, dashes and spaces in a typed code.
func normalizeRecovery(code string) string {
	return strings.ToLower(strings.NewReplacer("-", "", " ", "").Replace(code))
}
