// Package objectstest is the contract every store.Objects backend passes.
// A backend's test calls Run with a function that opens a fresh, empty
// store; the folder store and the S3 store both do, so code written against
// store.Objects cannot tell them apart in what this suite pins down.
package objectstest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamd/streamd/store"
)

// Run runs the contract. open must return a new empty store each call (its
// cleanup registered on the t it is given).
func Run(t *testing.T, open func(t *testing.T) store.Objects) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Objects)
	}{
		{"PutGetStat", testPutGetStat},
		{"Overwrite", testOverwrite},
		{"Ranges", testRanges},
		{"Missing", testMissing},
		{"InvalidKeys", testInvalidKeys},
		{"Delete", testDelete},
		{"List", testList},
		{"EmptyObject", testEmptyObject},
		{"LargeObject", testLargeObject},
		{"UnknownSize", testUnknownSize},
		{"SizeMismatch", testSizeMismatch},
		{"CanceledContext", testCanceledContext},
		{"MetacharacterKeys", testMetacharacterKeys},
		{"AtomicOverwrite", testAtomicOverwrite},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

const segType = "video/iso.segment"

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// onlyReader hides Seek/ReadAt/WriteTo so backends cannot take shortcuts
// that a network or pipe reader would not allow.
type onlyReader struct{ io.Reader }

func put(t *testing.T, s store.Objects, key string, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), key, onlyReader{bytes.NewReader(data)}, int64(len(data)), segType); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(data), err)
	}
}

func get(t *testing.T, s store.Objects, key string, rng *store.Range) ([]byte, store.ObjectInfo) {
	t.Helper()
	rc, info, err := s.Get(context.Background(), key, rng)
	if err != nil {
		t.Fatalf("Get(%q, %v): %v", key, rng, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q, %v): read: %v", key, rng, err)
	}
	return b, info
}

func stat(t *testing.T, s store.Objects, key string) store.ObjectInfo {
	t.Helper()
	info, err := s.Stat(context.Background(), key)
	if err != nil {
		t.Fatalf("Stat(%q): %v", key, err)
	}
	return info
}

func wantNotFound(t *testing.T, s store.Objects, key string) {
	t.Helper()
	if _, err := s.Stat(context.Background(), key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat(%q): %v, want ErrNotFound", key, err)
	}
	rc, _, err := s.Get(context.Background(), key, nil)
	if err == nil {
		rc.Close()
	}
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(%q): %v, want ErrNotFound", key, err)
	}
}

func sameInfo(t *testing.T, what string, got, want store.ObjectInfo) {
	t.Helper()
	if got.Key != want.Key || got.Size != want.Size || got.ETag != want.ETag || !got.ModTime.Equal(want.ModTime) {
		t.Errorf("%s: %+v, want %+v", what, got, want)
	}
}

func testPutGetStat(t *testing.T, s store.Objects) {
	key := "live/main/seg_00001.m4s"
	data := randomBytes(10000, 1)
	before := time.Now()
	put(t, s, key, data)
	body, info := get(t, s, key, nil)
	if !bytes.Equal(body, data) {
		t.Fatalf("Get body: %d bytes, differs from the %d put", len(body), len(data))
	}
	if info.Key != key || info.Size != int64(len(data)) {
		t.Errorf("Get info: key %q size %d", info.Key, info.Size)
	}
	if len(info.ETag) < 3 || !strings.HasPrefix(strings.TrimPrefix(info.ETag, "W/"), `"`) || !strings.HasSuffix(info.ETag, `"`) {
		t.Errorf("ETag %q is not a quoted HTTP entity tag", info.ETag)
	}
	// A clock skew of an hour still catches zero or garbage times.
	if info.ModTime.Before(before.Add(-time.Hour)) || info.ModTime.After(time.Now().Add(time.Hour)) {
		t.Errorf("ModTime %v, want about %v", info.ModTime, before)
	}
	if info.ContentType != segType {
		t.Errorf("Get ContentType %q, want %q", info.ContentType, segType)
	}
	st := stat(t, s, key)
	sameInfo(t, "Stat vs Get", st, info)
	if st.ContentType != segType {
		t.Errorf("Stat ContentType %q, want %q", st.ContentType, segType)
	}
}

func testOverwrite(t *testing.T, s store.Objects) {
	key := "live/main/index.m3u8"
	put(t, s, key, []byte("#EXTM3U\n#v1\n"))
	v1 := stat(t, s, key)
	put(t, s, key, []byte("#EXTM3U\n#version 2\n"))
	body, v2 := get(t, s, key, nil)
	if string(body) != "#EXTM3U\n#version 2\n" {
		t.Errorf("after overwrite: %q", body)
	}
	if v2.ETag == v1.ETag {
		t.Errorf("ETag %q unchanged by an overwrite with different content", v2.ETag)
	}
	sameInfo(t, "Stat after overwrite", stat(t, s, key), v2)
}

func testRanges(t *testing.T, s store.Objects) {
	key := "vod/film/seg_1.m4s"
	data := randomBytes(10000, 2)
	put(t, s, key, data)
	whole := stat(t, s, key)
	for _, tc := range []struct {
		rng      store.Range
		from, to int
	}{
		{store.Range{Start: 0, Length: 1}, 0, 1},
		{store.Range{Start: 0, Length: 100}, 0, 100},
		{store.Range{Start: 100, Length: 100}, 100, 200},
		{store.Range{Start: 9999, Length: 1}, 9999, 10000},
		{store.Range{Start: 0, Length: -1}, 0, 10000},       // to the end, from the start
		{store.Range{Start: 9990, Length: -1}, 9990, 10000}, // to the end
		{store.Range{Start: 5000, Length: 99999}, 5000, 10000},
		{store.Range{Start: 10000, Length: -1}, 10000, 10000}, // at the end: empty
		{store.Range{Start: 10000, Length: 10}, 10000, 10000},
		{store.Range{Start: 42, Length: 0}, 42, 42},
	} {
		body, info := get(t, s, key, &tc.rng)
		if !bytes.Equal(body, data[tc.from:tc.to]) {
			t.Errorf("range %+v: %d bytes, want data[%d:%d]", tc.rng, len(body), tc.from, tc.to)
		}
		// Info describes the whole object, whatever the range.
		sameInfo(t, fmt.Sprintf("range %+v info", tc.rng), info, whole)
	}
	rc, _, err := s.Get(context.Background(), key, &store.Range{Start: 10001, Length: -1})
	if err == nil {
		rc.Close()
		t.Errorf("range starting past the end: no error")
	}
	rc, _, err = s.Get(context.Background(), "vod/film/missing.m4s", &store.Range{Start: 0, Length: 10})
	if err == nil {
		rc.Close()
	}
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("range of a missing object: %v, want ErrNotFound", err)
	}
}

func testMissing(t *testing.T, s store.Objects) {
	wantNotFound(t, s, "live/nope/index.m3u8")
	put(t, s, "live/a/b.m4s", []byte("x"))
	// A "folder" is not an object.
	wantNotFound(t, s, "live/a")
	if err := s.Delete(context.Background(), "live/nope/index.m3u8"); err != nil {
		t.Errorf("Delete of a missing object: %v", err)
	}
	list, err := s.List(context.Background(), "live/nope/")
	if err != nil || len(list) != 0 {
		t.Errorf("List of an empty prefix: %v, %v", list, err)
	}
}

var invalidKeys = []string{"", "/abs", "/", "a//b", "a/", "./a", "a/.", "a/./b", "..", "../a", "a/../b", "a/..", `a\b`, "a\x00b"}

func testInvalidKeys(t *testing.T, s store.Objects) {
	ctx := context.Background()
	for _, key := range invalidKeys {
		if err := s.Put(ctx, key, strings.NewReader("x"), 1, segType); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("Put(%q): %v, want ErrInvalidKey", key, err)
		}
		rc, _, err := s.Get(ctx, key, nil)
		if err == nil {
			rc.Close()
		}
		if !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("Get(%q): %v, want ErrInvalidKey", key, err)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("Stat(%q): %v, want ErrInvalidKey", key, err)
		}
		if err := s.Delete(ctx, key); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("Delete(%q): %v, want ErrInvalidKey", key, err)
		}
	}
	for _, prefix := range []string{"/abs", "../", "a//", "a/../b/", "./"} {
		if _, err := s.List(ctx, prefix); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("List(%q): %v, want ErrInvalidKey", prefix, err)
		}
	}
	if list, err := s.List(ctx, ""); err != nil || len(list) != 0 {
		t.Errorf("refused keys left objects behind: %v %v", list, err)
	}
}

func testDelete(t *testing.T, s store.Objects) {
	ctx := context.Background()
	var keys []string
	for i := range 25 {
		k := fmt.Sprintf("live/del/seg_%03d.m4s", i)
		keys = append(keys, k)
		put(t, s, k, []byte(k))
	}
	// Several at once (backends batch), with a missing one among them.
	if err := s.Delete(ctx, append(keys[:20:20], "live/del/never.m4s")...); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for _, k := range keys[:20] {
		wantNotFound(t, s, k)
	}
	list, err := s.List(ctx, "live/del/")
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, o := range list {
		left = append(left, o.Key)
	}
	if !slices.Equal(left, keys[20:]) {
		t.Errorf("after Delete, List: %q, want %q", left, keys[20:])
	}
	if err := s.Delete(ctx); err != nil {
		t.Errorf("Delete of nothing: %v", err)
	}
	// An invalid key is reported, and the valid ones are still deleted.
	err = s.Delete(ctx, "../x", keys[20])
	if !errors.Is(err, store.ErrInvalidKey) {
		t.Errorf("Delete with an invalid key: %v, want ErrInvalidKey", err)
	}
	wantNotFound(t, s, keys[20])
}

func testList(t *testing.T, s store.Objects) {
	ctx := context.Background()
	// Put in an order unrelated to the sorted one; the keys around "a"
	// check byte order ('-' < '/' < '0' < 'B' < 'a') and that a prefix is
	// a string prefix, not a folder.
	keys := []string{
		"live/a/2.m4s", "live/ab/1.m4s", "live/a/1.m4s", "live/a/sub/x.m4s", "live/a-1.m4s",
		"live/a0.m4s", "live/B/1.m4s", "live/b/1.m4s", "other/1.m4s", "livex.m4s",
	}
	for i, k := range keys {
		put(t, s, k, bytes.Repeat([]byte{'x'}, i+1))
	}
	size := map[string]int64{}
	for i, k := range keys {
		size[k] = int64(i + 1)
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"live/a/", []string{"live/a/1.m4s", "live/a/2.m4s", "live/a/sub/x.m4s"}},
		{"live/a", []string{"live/a-1.m4s", "live/a/1.m4s", "live/a/2.m4s", "live/a/sub/x.m4s", "live/a0.m4s", "live/ab/1.m4s"}},
		{"live/a/sub/", []string{"live/a/sub/x.m4s"}},
		{"live/a/1.m4s", []string{"live/a/1.m4s"}},
		{"live/", []string{"live/B/1.m4s", "live/a-1.m4s", "live/a/1.m4s", "live/a/2.m4s", "live/a/sub/x.m4s", "live/a0.m4s", "live/ab/1.m4s", "live/b/1.m4s"}},
		{"live", []string{"live/B/1.m4s", "live/a-1.m4s", "live/a/1.m4s", "live/a/2.m4s", "live/a/sub/x.m4s", "live/a0.m4s", "live/ab/1.m4s", "live/b/1.m4s", "livex.m4s"}},
		{"", []string{"live/B/1.m4s", "live/a-1.m4s", "live/a/1.m4s", "live/a/2.m4s", "live/a/sub/x.m4s", "live/a0.m4s", "live/ab/1.m4s", "live/b/1.m4s", "livex.m4s", "other/1.m4s"}},
		{"live/c", nil},
		{"nothing/", nil},
	} {
		list, err := s.List(ctx, tc.prefix)
		if err != nil {
			t.Errorf("List(%q): %v", tc.prefix, err)
			continue
		}
		var got []string
		for _, o := range list {
			got = append(got, o.Key)
			if o.Size != size[o.Key] {
				t.Errorf("List(%q): %s size %d, want %d", tc.prefix, o.Key, o.Size, size[o.Key])
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("List(%q):\n got %q\nwant %q", tc.prefix, got, tc.want)
		}
	}
	// Listed validators are the ones Stat gives, so a listing can be
	// compared with later Stats.
	list, err := s.List(ctx, "live/a/")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range list {
		sameInfo(t, "List vs Stat "+o.Key, o, stat(t, s, o.Key))
	}
}

func testEmptyObject(t *testing.T, s store.Objects) {
	key := "live/main/empty.m4s"
	put(t, s, key, nil)
	body, info := get(t, s, key, nil)
	if len(body) != 0 || info.Size != 0 {
		t.Errorf("empty object: %d bytes, Size %d", len(body), info.Size)
	}
	sameInfo(t, "Stat of empty", stat(t, s, key), info)
	body, info = get(t, s, key, &store.Range{Start: 0, Length: -1})
	if len(body) != 0 || info.Size != 0 {
		t.Errorf("range of empty object: %d bytes, Size %d", len(body), info.Size)
	}
}

func testLargeObject(t *testing.T, s store.Objects) {
	key := "vod/film/master.mp4"
	data := randomBytes(5<<20+123, 3)
	put(t, s, key, data)
	rc, info, err := s.Get(context.Background(), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, rc)
	rc.Close()
	if err != nil || n != int64(len(data)) || info.Size != int64(len(data)) {
		t.Fatalf("Get: %d bytes, Size %d, %v; want %d", n, info.Size, err, len(data))
	}
	if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("large object body differs")
	}
	mid := int64(len(data)/2 - 1000)
	body, _ := get(t, s, key, &store.Range{Start: mid, Length: 1 << 20})
	if !bytes.Equal(body, data[mid:mid+1<<20]) {
		t.Error("1 MiB range in the middle differs")
	}
}

func testUnknownSize(t *testing.T, s store.Objects) {
	key := "live/main/unknown.m4s"
	data := randomBytes(70000, 4)
	if err := s.Put(context.Background(), key, onlyReader{bytes.NewReader(data)}, -1, segType); err != nil {
		t.Fatalf("Put with size -1: %v", err)
	}
	body, info := get(t, s, key, nil)
	if !bytes.Equal(body, data) || info.Size != int64(len(data)) {
		t.Errorf("size -1 object: %d bytes, Size %d, want %d", len(body), info.Size, len(data))
	}
}

// testSizeMismatch: a reader that does not hold the declared size is an
// error, and no object (short or truncated) appears.
func testSizeMismatch(t *testing.T, s store.Objects) {
	ctx := context.Background()
	if err := s.Put(ctx, "live/short.m4s", onlyReader{strings.NewReader("abc")}, 10, segType); err == nil {
		t.Error("Put of 3 bytes declared as 10: no error")
	}
	wantNotFound(t, s, "live/short.m4s")
	if err := s.Put(ctx, "live/long.m4s", onlyReader{strings.NewReader("abcdefghij")}, 3, segType); err == nil {
		t.Error("Put of 10 bytes declared as 3: no error")
	}
	wantNotFound(t, s, "live/long.m4s")
	// A failed overwrite leaves the old object whole.
	put(t, s, "live/keep.m4s", []byte("old"))
	if err := s.Put(ctx, "live/keep.m4s", onlyReader{strings.NewReader("ne")}, 3, segType); err == nil {
		t.Error("short overwrite: no error")
	}
	if body, _ := get(t, s, "live/keep.m4s", nil); string(body) != "old" {
		t.Errorf("after a failed overwrite: %q, want \"old\"", body)
	}
}

func testCanceledContext(t *testing.T, s store.Objects) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Put(ctx, "live/canceled.m4s", strings.NewReader("x"), 1, segType); err == nil {
		t.Error("Put with a canceled context: no error")
	}
	wantNotFound(t, s, "live/canceled.m4s")
}

// metaKeys are keys CleanKey allows that carry characters meaningful to
// SQL, shells, URLs or paths: a backend must store them as plain names.
var metaKeys = []string{
	"meta/it's; DROP TABLE objects;--.m4s",
	`meta/"quoted" <tag> |pipe| *star* ?.m4s`,
	"meta/100% done/a b+c=d&e.m4s",
	"meta/q?x=1&y=2#frag.m4s",
	"meta/%2e%2e/%2F%5c.m4s",
	"meta/$(id)/`id`/${HOME}.m4s",
	"meta/a..b/..c/d....m4s",
	"meta/.hidden/~/x.m4s",
	"meta/colon:semi;comma,[brackets]{braces}(parens)@!.m4s",
	"meta/ünïcødé/日本語/😀.m4s",
	"meta/_%_/like%/x_.m4s",
}

func testMetacharacterKeys(t *testing.T, s store.Objects) {
	ctx := context.Background()
	for _, k := range metaKeys {
		if _, err := store.CleanKey(k); err != nil {
			t.Fatalf("test key %q is not valid: %v", k, err)
		}
		put(t, s, k, []byte(k))
	}
	for _, k := range metaKeys {
		if body, info := get(t, s, k, nil); string(body) != k || info.Key != k {
			t.Errorf("Get(%q): body %q key %q", k, body, info.Key)
		}
		stat(t, s, k)
	}
	// SQL LIKE wildcards in a prefix are literal.
	list, err := s.List(ctx, "meta/_%_/")
	if err != nil || len(list) != 1 || list[0].Key != "meta/_%_/like%/x_.m4s" {
		t.Errorf("List(meta/_%%_/): %v %v", list, err)
	}
	list, err = s.List(ctx, "meta/")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range list {
		got = append(got, o.Key)
	}
	want := slices.Clone(metaKeys)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("List(meta/):\n got %q\nwant %q", got, want)
	}
	if err := s.Delete(ctx, metaKeys...); err != nil {
		t.Fatal(err)
	}
	for _, k := range metaKeys {
		wantNotFound(t, s, k)
	}
}

// testAtomicOverwrite: while a key is replaced again and again, every
// reader sees one whole version, never a mix or a truncated one.
func testAtomicOverwrite(t *testing.T, s store.Objects) {
	key := "live/main/atomic.m4s"
	versions := [][]byte{bytes.Repeat([]byte{'a'}, 256<<10), bytes.Repeat([]byte{'b'}, 384<<10)}
	put(t, s, key, versions[0])
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	reads := 0
	for range 3 {
		wg.Go(func() {
			for ctx.Err() == nil {
				rc, info, err := s.Get(context.Background(), key, nil)
				if err != nil {
					t.Errorf("Get during overwrites: %v", err)
					return
				}
				body, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					t.Errorf("read during overwrites: %v", err)
					return
				}
				if !bytes.Equal(body, versions[0]) && !bytes.Equal(body, versions[1]) {
					t.Errorf("read a mixed or partial object: %d bytes, starts %q, ends %q", len(body), body[:min(len(body), 1)], body[max(len(body)-1, 0):])
					return
				}
				if info.Size != int64(len(body)) {
					t.Errorf("info.Size %d for a body of %d bytes", info.Size, len(body))
					return
				}
				mu.Lock()
				reads++
				mu.Unlock()
			}
		})
	}
	for i := range 30 {
		put(t, s, key, versions[(i+1)%2])
	}
	cancel()
	wg.Wait()
	if reads == 0 {
		t.Error("no read completed during the overwrites")
	}
}
