package store

import (
	"fmt"
	"strings"
)

// CleanKey validates an object key and returns it unchanged when it is safe.
// It refuses anything that could name a file outside the store.
func CleanKey(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || strings.ContainsAny(key, "\\\x00") {
		return "", fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	for _, el := range strings.Split(key, "/") {
		if el == "" || el == "." || el == ".." {
			return "", fmt.Errorf("%w: %q", ErrInvalidKey, key)
		}
	}
	return key, nil
}

// CleanPrefix validates a List prefix: empty, or a key optionally ending in "/".
func CleanPrefix(prefix string) (string, error) {
	if prefix == "" {
		return "", nil
	}
	if _, err := CleanKey(strings.TrimSuffix(prefix, "/")); err != nil {
		return "", err
	}
	return prefix, nil
}
