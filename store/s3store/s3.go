// Package s3store keeps objects in an S3 bucket (MinIO in production, or
// any S3-compatible service): the object store for several streamd
// processes sharing one set of segments.
package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/lifecycle"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/streamd/streamd/store"
)

// Config locates the bucket. The fields are the config keys
// storage.objects.{endpoint,bucket,region,access_key,secret_key,use_ssl,prefix}.
type Config struct {
	// Endpoint is host:port, without a scheme ("minio.internal:9000").
	Endpoint string
	Bucket   string
	// Region is sent in signatures and used when creating the bucket.
	// Empty means us-east-1, which MinIO accepts whatever its own setting.
	Region    string
	AccessKey string
	SecretKey string
	UseSSL    bool
	// Prefix is prepended to every key, so several deployments can share
	// one bucket ("tenant-a" stores "live/x" as "tenant-a/live/x").
	Prefix string
}

// Store is an object store in one bucket.
type Store struct {
	client *minio.Client
	core   minio.Core // for GetObject returning headers in one request
	bucket string
	prefix string // "" or ending in "/"
	host   string
	log    *slog.Logger
}

var (
	_ store.Objects    = (*Store)(nil)
	_ store.Presigner  = (*Store)(nil)
	_ store.Lifecycler = (*Store)(nil)
)

// Retries of one S3 call. minio-go defaults to 10 with back-off, which
// turns a dead backend into requests hanging for seconds; the origin would
// rather answer 502 quickly and let the CDN or player retry.
const maxRetries = 3

// New connects to the bucket, creating it when missing. Any failure is one
// line naming the setting to fix.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Store, error) {
	switch {
	case cfg.Endpoint == "":
		return nil, errors.New("storage.objects.endpoint: required (host:port of the S3 service)")
	case strings.Contains(cfg.Endpoint, "://") || strings.Contains(cfg.Endpoint, "/"):
		return nil, fmt.Errorf("storage.objects.endpoint %q: give host:port only, without scheme or path (TLS is storage.objects.use_ssl)", cfg.Endpoint)
	case cfg.Bucket == "":
		return nil, errors.New("storage.objects.bucket: required")
	}
	if err := s3utils.CheckValidBucketNameStrict(cfg.Bucket); err != nil {
		return nil, fmt.Errorf("storage.objects.bucket %q: %s", cfg.Bucket, oneLine(err.Error()))
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		if _, err := store.CleanKey(prefix); err != nil || !utf8.ValidString(prefix) {
			return nil, fmt.Errorf("storage.objects.prefix %q: not a valid key prefix (no empty, \".\" or \"..\" elements, no backslashes)", cfg.Prefix)
		}
		prefix += "/"
	}
	opts := func(retries int) *minio.Options {
		return &minio.Options{
			Creds:      credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
			Secure:     cfg.UseSSL,
			Region:     cfg.Region,
			MaxRetries: retries,
		}
	}
	client, err := minio.New(cfg.Endpoint, opts(maxRetries))
	if err != nil {
		return nil, fmt.Errorf("storage.objects.endpoint %q: %s", cfg.Endpoint, oneLine(err.Error()))
	}
	s := &Store{
		client: client,
		core:   minio.Core{Client: client},
		bucket: cfg.Bucket,
		prefix: prefix,
		host:   cfg.Endpoint,
		log:    log.With("component", "s3store", "endpoint", cfg.Endpoint, "bucket", cfg.Bucket),
	}
	// The start-up check does not retry: a wrong setting should fail the
	// start at once, not after a back-off series.
	probe, err := minio.New(cfg.Endpoint, opts(1))
	if err != nil {
		return nil, fmt.Errorf("storage.objects.endpoint %q: %s", cfg.Endpoint, oneLine(err.Error()))
	}
	exists, err := probe.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, s.describe(cfg, err)
	}
	if !exists {
		err := probe.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region})
		// Another streamd process may have created it a moment ago.
		if err != nil && code(err) != "BucketAlreadyOwnedByYou" {
			return nil, s.describe(cfg, err)
		}
		if err == nil {
			s.log.Info("bucket created")
		}
	}
	return s, nil
}

// describe turns a start-up failure into one line naming the setting an
// operator has to change.
func (s *Store) describe(cfg Config, err error) error {
	host := cfg.Endpoint
	switch code(err) {
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken":
		return fmt.Errorf("storage.objects.access_key/secret_key: access denied by s3 at %s", host)
	case "AuthorizationHeaderMalformed", "InvalidRegion", "IllegalLocationConstraintException":
		return fmt.Errorf("storage.objects.region %q: refused by s3 at %s: %s", cfg.Region, host, oneLine(err.Error()))
	case "BucketAlreadyExists":
		return fmt.Errorf("storage.objects.bucket %q: the name is taken by another account at %s", cfg.Bucket, host)
	case "InvalidBucketName":
		return fmt.Errorf("storage.objects.bucket %q: refused by s3 at %s: %s", cfg.Bucket, host, oneLine(err.Error()))
	}
	var dnsErr *net.DNSError
	msg := err.Error()
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("storage.objects.endpoint %s: connection refused", host)
	case errors.As(err, &dnsErr):
		return fmt.Errorf("storage.objects.endpoint %s: no such host", host)
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return fmt.Errorf("storage.objects.endpoint %s: no answer (timed out)", host)
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("storage.objects.use_ssl: %s speaks plain HTTP; set use_ssl to false", host)
	case !cfg.UseSSL && (strings.Contains(msg, "malformed HTTP response") || strings.Contains(msg, "HTTP request to an HTTPS server")):
		return fmt.Errorf("storage.objects.use_ssl: %s did not answer plain HTTP (TLS only?); set use_ssl to true", host)
	case strings.Contains(msg, "x509:") || strings.Contains(msg, "tls:"):
		return fmt.Errorf("storage.objects.endpoint %s: TLS: %s", host, oneLine(msg))
	}
	return fmt.Errorf("storage.objects.endpoint %s: %s", host, oneLine(msg))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// code is the S3 error code of err, or "".
func code(err error) string {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return er.Code
	}
	return minio.ToErrorResponse(err).Code
}

// name maps a key to the object name in the bucket. S3 names are UTF-8; a
// key that is not (a URL with "%ff" in it) is refused as invalid rather
// than sent, so the origin answers 400 instead of 502.
func (s *Store) name(key string) (string, error) {
	k, err := store.CleanKey(key)
	if err != nil {
		return "", err
	}
	if !utf8.ValidString(k) || len(s.prefix)+len(k) > 1024 {
		return "", fmt.Errorf("%w: %q (s3 keys are UTF-8, at most 1024 bytes)", store.ErrInvalidKey, key)
	}
	return s.prefix + k, nil
}

// mapErr turns S3 errors into the store's sentinel errors where one fits.
func (s *Store) mapErr(op, key string, err error) error {
	switch code(err) {
	case "NoSuchKey":
		return fmt.Errorf("%w: %s", store.ErrNotFound, key)
	case minio.XMinioInvalidObjectName, "KeyTooLongError":
		return fmt.Errorf("%w: %q: %s", store.ErrInvalidKey, key, oneLine(err.Error()))
	}
	return fmt.Errorf("s3 %s %s: %w", op, key, err)
}

// quoteETag keeps ETags in HTTP form. minio-go strips the quotes S3 sends;
// every method puts them back the same way, so Stat, Get and List agree.
func quoteETag(etag string) string {
	if etag == "" || strings.HasPrefix(etag, `"`) || strings.HasPrefix(etag, "W/") {
		return etag
	}
	return `"` + etag + `"`
}

func (s *Store) info(key string, oi minio.ObjectInfo) store.ObjectInfo {
	return store.ObjectInfo{
		Key:         key,
		Size:        oi.Size,
		ModTime:     oi.LastModified,
		ETag:        quoteETag(oi.ETag),
		ContentType: oi.ContentType,
	}
}

// Put uploads the object. With a known size, the body is streamed in one
// PUT (chunk-signed, never buffered whole) up to minio-go's part size
// (16 MiB), and as a streamed multipart upload above it. An unknown size
// (-1) makes minio-go buffer one part at a time. Either way S3 makes the
// new object visible atomically.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error {
	name, err := s.name(key)
	if err != nil {
		return err
	}
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	body := r
	if size >= 0 {
		body = &exactReader{r: r, left: size}
	}
	if _, err := s.client.PutObject(ctx, s.bucket, name, body, size, minio.PutObjectOptions{ContentType: contentType}); err != nil {
		return s.mapErr("put", key, err)
	}
	return nil
}

// exactReader fails the upload when r holds more than the declared size.
// minio-go stops reading at size and would silently store a truncated
// object; a short reader already fails in the HTTP client.
type exactReader struct {
	r    io.Reader
	left int64
}

var errTooLong = errors.New("body longer than the declared size")

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		var one [1]byte
		if n, _ := io.ReadFull(e.r, one[:]); n > 0 {
			return 0, errTooLong
		}
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if e.left == 0 && err == nil {
		// Look one byte ahead now: the reader on the other side may stop
		// at size and never ask again.
		var one [1]byte
		if m, _ := io.ReadFull(e.r, one[:]); m > 0 {
			return n, errTooLong
		}
	}
	if err == io.EOF && e.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Get streams the object or a range of it; a range is passed on to S3, so
// only those bytes travel.
func (s *Store) Get(ctx context.Context, key string, rng *store.Range) (io.ReadCloser, store.ObjectInfo, error) {
	name, err := s.name(key)
	if err != nil {
		return nil, store.ObjectInfo{}, err
	}
	var opts minio.GetObjectOptions
	if rng != nil {
		if rng.Start < 0 {
			return nil, store.ObjectInfo{}, fmt.Errorf("get %s: negative range start %d", key, rng.Start)
		}
		if rng.Length == 0 {
			// S3 has no empty range; "bytes=5-4" would be ignored and
			// return everything.
			return s.emptyRange(ctx, key, rng)
		}
		if rng.Length < 0 {
			opts.Set("Range", fmt.Sprintf("bytes=%d-", rng.Start))
		} else {
			opts.Set("Range", fmt.Sprintf("bytes=%d-%d", rng.Start, rng.Start+rng.Length-1))
		}
	}
	body, oi, hdr, err := s.core.GetObject(ctx, s.bucket, name, opts)
	if err != nil {
		if rng != nil && code(err) == "InvalidRange" {
			// Start at or past the end (or an empty object).
			return s.emptyRange(ctx, key, rng)
		}
		return nil, store.ObjectInfo{}, s.mapErr("get", key, err)
	}
	info := s.info(key, oi)
	if rng != nil {
		// With a Range, the response's length is the part's; the whole
		// size is after the slash of Content-Range.
		total, ok := contentRangeTotal(hdr.Get("Content-Range"))
		if !ok {
			body.Close()
			return nil, store.ObjectInfo{}, fmt.Errorf("s3 get %s: range %d+%d answered without a usable Content-Range (%q)", key, rng.Start, rng.Length, hdr.Get("Content-Range"))
		}
		info.Size = total
	}
	return body, info, nil
}

// emptyRange answers a range that selects no bytes: an empty body when it
// starts exactly at the end (as the folder store does), an error when it
// starts beyond.
func (s *Store) emptyRange(ctx context.Context, key string, rng *store.Range) (io.ReadCloser, store.ObjectInfo, error) {
	info, err := s.Stat(ctx, key)
	if err != nil {
		return nil, store.ObjectInfo{}, err
	}
	if rng.Start > info.Size {
		return nil, info, fmt.Errorf("get %s: range start %d outside object of %d bytes", key, rng.Start, info.Size)
	}
	return io.NopCloser(bytes.NewReader(nil)), info, nil
}

func contentRangeTotal(cr string) (int64, bool) {
	_, total, ok := strings.Cut(cr, "/")
	if !ok || !strings.HasPrefix(cr, "bytes ") {
		return 0, false
	}
	n, err := strconv.ParseInt(total, 10, 64)
	return n, err == nil && n >= 0
}

// Stat describes one object (a HEAD request).
func (s *Store) Stat(ctx context.Context, key string) (store.ObjectInfo, error) {
	name, err := s.name(key)
	if err != nil {
		return store.ObjectInfo{}, err
	}
	oi, err := s.client.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
	if err != nil {
		return store.ObjectInfo{}, s.mapErr("stat", key, err)
	}
	return s.info(key, oi), nil
}

// Delete removes objects in batches (one multi-object delete request per
// 1000 keys). Missing objects are not an error; invalid keys are reported
// and the valid ones still deleted, as in the folder store.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	var errs []error
	ch := make(chan minio.ObjectInfo, len(keys))
	for _, key := range keys {
		name, err := s.name(key)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ch <- minio.ObjectInfo{Key: name}
	}
	close(ch)
	if len(ch) == 0 {
		return errors.Join(errs...)
	}
	for e := range s.client.RemoveObjects(ctx, s.bucket, ch, minio.RemoveObjectsOptions{}) {
		if e.Err == nil || code(e.Err) == "NoSuchKey" {
			continue
		}
		errs = append(errs, s.mapErr("delete", strings.TrimPrefix(e.ObjectName, s.prefix), e.Err))
	}
	return errors.Join(errs...)
}

// List returns the objects under prefix, sorted by key. Listings carry no
// content type, so ContentType is empty.
func (s *Store) List(ctx context.Context, prefix string) ([]store.ObjectInfo, error) {
	prefix, err := store.CleanPrefix(prefix)
	if err != nil {
		return nil, err
	}
	if !utf8.ValidString(prefix) {
		return nil, fmt.Errorf("%w: %q (s3 keys are UTF-8)", store.ErrInvalidKey, prefix)
	}
	var out []store.ObjectInfo
	for oi := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if oi.Err != nil {
			return nil, s.mapErr("list", prefix, oi.Err)
		}
		key := strings.TrimPrefix(oi.Key, s.prefix)
		// Listings carry milliseconds, HEAD and GET only the whole
		// seconds of an HTTP date: truncate so List agrees with Stat.
		out = append(out, store.ObjectInfo{Key: key, Size: oi.Size, ModTime: oi.LastModified.Truncate(time.Second), ETag: quoteETag(oi.ETag)})
	}
	// S3 lists in UTF-8 byte order already; S3-compatible services are
	// not all that careful, and the contract is sorted.
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, ctx.Err()
}

// PresignGet returns a URL that reads the object without credentials until
// expiry (1s to 7 days, the limits of S3 signatures).
func (s *Store) PresignGet(ctx context.Context, key string, expiry time.Duration) (string, error) {
	name, err := s.name(key)
	if err != nil {
		return "", err
	}
	u, err := s.client.PresignedGetObject(ctx, s.bucket, name, expiry, nil)
	if err != nil {
		return "", fmt.Errorf("presign get %s: %w", key, err)
	}
	return u.String(), nil
}

// PresignPut returns a URL that uploads the object with a plain HTTP PUT
// until expiry.
func (s *Store) PresignPut(ctx context.Context, key string, expiry time.Duration) (string, error) {
	name, err := s.name(key)
	if err != nil {
		return "", err
	}
	u, err := s.client.PresignedPutObject(ctx, s.bucket, name, expiry)
	if err != nil {
		return "", fmt.Errorf("presign put %s: %w", key, err)
	}
	return u.String(), nil
}

// ruleOwner marks the lifecycle rules this store manages. A bucket has a
// single lifecycle configuration shared by everyone using it (other
// prefixes, other tools), so ApplyLifecycle rewrites only rules carrying
// its own mark and keeps the rest.
func (s *Store) ruleOwner() string { return "streamd|" + s.prefix + "|" }

// ApplyLifecycle replaces this store's expiry rules with rules. It reads,
// edits and writes the bucket's configuration: run it from one process
// (at start-up), not from many at once.
func (s *Store) ApplyLifecycle(ctx context.Context, rules []store.LifecycleRule) error {
	seen := map[string]bool{}
	var ours []lifecycle.Rule
	for _, r := range rules {
		if r.Prefix == "" {
			return errors.New("lifecycle rule: empty prefix would expire the whole store")
		}
		p, err := store.CleanPrefix(r.Prefix)
		if err != nil {
			return fmt.Errorf("lifecycle rule prefix: %w", err)
		}
		if r.ExpireAfterDays < 1 {
			return fmt.Errorf("lifecycle rule %q: expire_after_days must be at least 1, not %d", p, r.ExpireAfterDays)
		}
		id := r.ID
		if id == "" {
			id = p
		}
		if seen[id] {
			return fmt.Errorf("lifecycle rule %q: duplicate id", id)
		}
		seen[id] = true
		ours = append(ours, lifecycle.Rule{
			ID:         s.ruleOwner() + id,
			Status:     "Enabled",
			RuleFilter: lifecycle.Filter{Prefix: s.prefix + p},
			Expiration: lifecycle.Expiration{Days: lifecycle.ExpirationDays(r.ExpireAfterDays)},
		})
	}
	cfg, err := s.bucketLifecycle(ctx)
	if err != nil {
		return err
	}
	kept := ours
	for _, r := range cfg.Rules {
		if !strings.HasPrefix(r.ID, s.ruleOwner()) {
			kept = append(kept, r)
		}
	}
	cfg.Rules = kept
	if err := s.client.SetBucketLifecycle(ctx, s.bucket, cfg); err != nil {
		return fmt.Errorf("s3 set lifecycle of bucket %s: %w", s.bucket, err)
	}
	s.log.Info("lifecycle rules applied", "rules", len(ours))
	return nil
}

// Lifecycle returns this store's expiry rules, sorted by ID.
func (s *Store) Lifecycle(ctx context.Context) ([]store.LifecycleRule, error) {
	cfg, err := s.bucketLifecycle(ctx)
	if err != nil {
		return nil, err
	}
	var out []store.LifecycleRule
	for _, r := range cfg.Rules {
		id, ok := strings.CutPrefix(r.ID, s.ruleOwner())
		if !ok {
			continue
		}
		p := r.RuleFilter.Prefix
		if p == "" {
			p = r.Prefix // the pre-Filter form
		}
		out = append(out, store.LifecycleRule{
			ID:              id,
			Prefix:          strings.TrimPrefix(p, s.prefix),
			ExpireAfterDays: int(r.Expiration.Days),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (s *Store) bucketLifecycle(ctx context.Context) (*lifecycle.Configuration, error) {
	cfg, err := s.client.GetBucketLifecycle(ctx, s.bucket)
	if code(err) == "NoSuchLifecycleConfiguration" || (err == nil && cfg == nil) {
		return lifecycle.NewConfiguration(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("s3 get lifecycle of bucket %s: %w", s.bucket, err)
	}
	return cfg, nil
}
