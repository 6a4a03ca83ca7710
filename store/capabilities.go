package store

import (
	"context"
	"time"
)

// Optional capabilities of an Objects backend. Callers discover them with a
// type assertion and fall back when a backend lacks one: the local folder
// store has neither, so streamd must still run (uploads through the API
// instead of presigned URLs, retention by the packager's own deletes) when
// they are absent.

// Presigner hands out URLs that let a client read or write one object
// directly, without streamd in the data path (large uploads, masters).
// The URLs carry the credentials' authority until expiry: keep expiry short.
type Presigner interface {
	PresignGet(ctx context.Context, key string, expiry time.Duration) (string, error)
	PresignPut(ctx context.Context, key string, expiry time.Duration) (string, error)
}

// LifecycleRule expires every object whose key starts with Prefix once it
// is older than ExpireAfterDays days. Days, not hours: that is the unit S3
// lifecycle rules count in, and the backend deletes in a daily sweep.
type LifecycleRule struct {
	// ID names the rule; unique within one store. Empty means derived
	// from Prefix.
	ID string
	// Prefix is a key prefix as List takes it ("live/" or "vod/film/").
	// It must not be empty: a rule over the whole store would delete
	// masters along with live segments.
	Prefix          string
	ExpireAfterDays int
}

// Lifecycler lets the backend itself expire old objects, so retention does
// not depend on a streamd process being up to delete them.
type Lifecycler interface {
	// ApplyLifecycle replaces the rules this store manages with rules
	// (declarative: a rule left out is removed). An empty list removes
	// them all.
	ApplyLifecycle(ctx context.Context, rules []LifecycleRule) error
	// Lifecycle returns the rules this store manages, sorted by ID.
	Lifecycle(ctx context.Context) ([]LifecycleRule, error)
}
