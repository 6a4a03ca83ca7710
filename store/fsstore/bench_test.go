package fsstore

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
)

// BenchmarkPut measures what the fsyncs cost per object: a 1.25 MB
// segment (2 s at 5 Mbit/s) and a 1 KB live playlist, with and without
// sync, in the same run so the ratio is not skewed by the machine's mood.
// The folder is b.TempDir(), or STREAMD_BENCH_DIR to measure the disk
// that will hold the store (a tmpfs /tmp makes fsync free):
//
//	STREAMD_BENCH_DIR=/var/lib/streamd go test -run '^$' -bench BenchmarkPut -benchtime 200x ./store/fsstore/
func BenchmarkPut(b *testing.B) {
	for _, obj := range []struct {
		name string
		size int
	}{{"segment-1.25MB", 1250 << 10}, {"playlist-1KB", 1 << 10}} {
		for _, sync := range []bool{true, false} {
			name := obj.name + "/fsync"
			if !sync {
				name = obj.name + "/nosync"
			}
			b.Run(name, func(b *testing.B) { benchPut(b, obj.size, !sync) })
		}
	}
}

func benchPut(b *testing.B, size int, noSync bool) {
	dir := b.TempDir()
	if d := os.Getenv("STREAMD_BENCH_DIR"); d != "" {
		var err error
		if dir, err = os.MkdirTemp(d, "fsstore-bench-"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
	}
	s, err := open(dir, func(s *Store) { s.noSync = noSync })
	if err != nil {
		b.Fatal(err)
	}
	data := bytes.Repeat([]byte{0x47}, size)
	ctx := context.Background()
	b.SetBytes(int64(size))
	for i := 0; b.Loop(); i++ {
		// A window of names, as a live channel keeps: new files replace
		// old ones instead of the disk filling up.
		key := fmt.Sprintf("live/main/r0/seg%03d.m4s", i%64)
		if err := s.Put(ctx, key, bytes.NewReader(data), int64(size), ""); err != nil {
			b.Fatal(err)
		}
	}
}
