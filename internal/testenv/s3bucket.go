package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Bucket is S3 with a fresh bucket name, streamd-test-<random>; the
// bucket (created by whoever uses it) is removed with its objects after
// the test.
func S3Bucket(t testing.TB) (endpoint, access, secret, bucket string) {
	t.Helper()
	endpoint, access, secret = S3(t)
	b := make([]byte, 6)
	rand.Read(b)
	bucket = "streamd-test-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(access, secret, "")})
		if err != nil {
			return
		}
		if ok, err := c.BucketExists(ctx, bucket); err != nil || !ok {
			return
		}
		objs := c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true})
		for range c.RemoveObjects(ctx, bucket, objs, minio.RemoveObjectsOptions{}) {
		}
		c.RemoveBucket(ctx, bucket)
	})
	return endpoint, access, secret, bucket
}
