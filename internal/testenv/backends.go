package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// missing fails (CI) or skips the test because a backend's variable is unset.
func missing(t testing.TB, env, what string) {
	t.Helper()
	msg := fmt.Sprintf("%s is not set: no %s to test against; run through `make test` or "+
		"`bash scripts/testenv.sh go test ...`, which start one", env, what)
	if CI() {
		t.Fatal(msg)
	}
	t.Skip("SKIPPED — " + msg)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Postgres creates a fresh database streamd_test_<random> on the server of
// STREAMD_TEST_POSTGRES_URL and returns its URL; the database is dropped
// when the test ends (after the test's own clean-ups, which should close
// their pools: registered later, they run first).
func Postgres(t testing.TB) string {
	t.Helper()
	base := os.Getenv("STREAMD_TEST_POSTGRES_URL")
	if base == "" {
		missing(t, "STREAMD_TEST_POSTGRES_URL", "PostgreSQL")
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("STREAMD_TEST_POSTGRES_URL: %v", err)
	}
	name := "streamd_test_" + randomHex(6)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("testenv: postgres at STREAMD_TEST_POSTGRES_URL: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		// FORCE: a pool a test forgot to close must not keep the database.
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// redisClaimTTL bounds how long a crashed test keeps a database number.
const redisClaimTTL = 30 * time.Minute

// Redis returns a URL of the server of STREAMD_TEST_REDIS_URL with a
// database number of the test's own, claimed in database 0 so that tests
// in parallel packages never share one; the database is flushed and
// released when the test ends.
func Redis(t testing.TB) string {
	t.Helper()
	base := os.Getenv("STREAMD_TEST_REDIS_URL")
	if base == "" {
		missing(t, "STREAMD_TEST_REDIS_URL", "Redis")
	}
	opts, err := redis.ParseURL(base)
	if err != nil {
		t.Fatalf("STREAMD_TEST_REDIS_URL: %v", err)
	}
	opts.DB = 0
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin := redis.NewClient(opts)
	defer admin.Close()
	dbs := 16 // Redis' default, when CONFIG is not allowed
	if v, err := admin.ConfigGet(ctx, "databases").Result(); err == nil {
		if n, err := strconv.Atoi(v["databases"]); err == nil && n > 1 {
			dbs = n
		}
	}
	owner := randomHex(8)
	db := 0
	for i := 1; i < dbs; i++ {
		ok, err := admin.SetNX(ctx, claimKey(i), owner, redisClaimTTL).Result()
		if err != nil {
			t.Fatalf("testenv: redis at STREAMD_TEST_REDIS_URL: %v", err)
		}
		if ok {
			db = i
			break
		}
	}
	if db == 0 {
		t.Fatalf("testenv: redis: all %d databases are claimed by other tests", dbs-1)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		o := *opts
		o.DB = db
		c := redis.NewClient(&o)
		defer c.Close()
		if err := c.FlushDB(ctx).Err(); err != nil {
			t.Errorf("testenv: redis: flush database %d: %v", db, err)
		}
		a := redis.NewClient(opts)
		defer a.Close()
		_ = a.Del(ctx, claimKey(db)).Err()
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("STREAMD_TEST_REDIS_URL: %v", err)
	}
	u.Path = "/" + strconv.Itoa(db)
	return u.String()
}

func claimKey(db int) string { return "streamd:testenv:claim:db" + strconv.Itoa(db) }

// S3 returns the S3 endpoint (host:port, plain HTTP) and credentials of
// STREAMD_TEST_S3_ENDPOINT, STREAMD_TEST_S3_ACCESS_KEY and
// STREAMD_TEST_S3_SECRET_KEY. Tests create buckets of their own on it.
func S3(t testing.TB) (endpoint, access, secret string) {
	t.Helper()
	endpoint = os.Getenv("STREAMD_TEST_S3_ENDPOINT")
	if endpoint == "" {
		missing(t, "STREAMD_TEST_S3_ENDPOINT", "S3 server (MinIO)")
	}
	access, secret = os.Getenv("STREAMD_TEST_S3_ACCESS_KEY"), os.Getenv("STREAMD_TEST_S3_SECRET_KEY")
	if access == "" || secret == "" {
		missing(t, "STREAMD_TEST_S3_ACCESS_KEY and STREAMD_TEST_S3_SECRET_KEY", "S3 credentials")
	}
	return endpoint, access, secret
}
