// Package auth owns who may do what: for now, the stream keys that let a
// broadcaster publish to a channel.
package auth

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// NewStreamKey returns a random key: 20 bytes of entropy in lowercase
// base32, which survives being pasted into OBS, URLs and shells unquoted.
func NewStreamKey() string {
	var b [20]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// KeyStore keeps generated stream keys as files under Dir/stream_keys/,
// readable only by the server's user.
type KeyStore struct {
	Dir string
}

func (k KeyStore) path(channel string) string {
	return filepath.Join(k.Dir, "stream_keys", channel+".key")
}

// Path is the file holding a channel's generated key.
func (k KeyStore) Path(channel string) string { return k.path(channel) }

// LoadOrCreate returns the channel's stored key, generating and storing a
// new one the first time. created reports whether it was generated now.
func (k KeyStore) LoadOrCreate(channel string) (key string, created bool, err error) {
	p := k.path(channel)
	b, err := os.ReadFile(p)
	if err == nil {
		key = strings.TrimSpace(string(b))
		if len(key) < 8 {
			return "", false, fmt.Errorf("stream key file %s is damaged (shorter than 8 characters): delete it to generate a new key", p)
		}
		return key, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("data_dir: reading stream key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", false, fmt.Errorf("data_dir: %w", err)
	}
	key = NewStreamKey()
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(key+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("data_dir: storing stream key: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return "", false, fmt.Errorf("data_dir: storing stream key: %w", err)
	}
	return key, true, nil
}
