package fsstore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// crashEnv, when set, turns the test binary into the writer that
// TestCrashLeavesOnlyWholeObjects kills: its value is the store's folder.
const crashEnv = "STREAMD_FSSTORE_CRASH_DIR"

const crashWriters = 4

// TestCrashLeavesOnlyWholeObjects re-runs this test binary as a child
// that Puts segments and then live playlists naming them, as the
// packager does, and kill -9s it mid-way, several times over the same
// folder. Every object left must be whole, and every segment a playlist
// names must exist and match the checksum the playlist gives.
//
// A kill -9 ends the process but not the kernel: data in the page cache
// still reaches the disk. So this proves that no torn or partial object
// is ever visible under its name, and that a crash's temp files are
// hidden and then cleaned; it cannot prove durability across a power cut.
// That is the fsync's job, whose order
// TestPutSyncsDataBeforeRenameAndFoldersAfter checks.
func TestCrashLeavesOnlyWholeObjects(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("kills child writers: not in -short")
	}
	root := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for round := range 3 {
		// Kill after 10 to 40 playlists: sometimes between Puts, most
		// often in the middle of a segment's write.
		runAndKill(t, root, 10+rng.IntN(30))
		if n := verifyStore(t, root); n == 0 {
			t.Fatalf("round %d: no playlist written before the kill", round)
		}
	}
	temps := countTemp(t, root)
	t.Logf("temp files left by the kills: %d", temps)
	// Nothing writes any more, so every temp file is a crash's.
	if _, err := open(root, func(s *Store) { s.staleTemp = 0 }); err != nil {
		t.Fatal(err)
	}
	if n := countTemp(t, root); n != 0 {
		t.Errorf("%d temp files left after reopening", n)
	}
	verifyStore(t, root)
}

// runAndKill starts the child and SIGKILLs it once it has reported after
// playlists Puts.
func runAndKill(t *testing.T, root string, after int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashLeavesOnlyWholeObjects$")
	cmd.Env = append(os.Environ(), crashEnv+"="+root)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	sc := bufio.NewScanner(out)
	seen := 0
	for seen < after && sc.Scan() {
		if strings.HasPrefix(sc.Text(), "playlist ") {
			seen++
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, out)
	cmd.Wait()
	if seen < after {
		t.Fatalf("the child stopped after %d playlists (want %d)", seen, after)
	}
}

// crashChild writes until killed (or for a minute, should the parent be
// gone). Each writer Puts a segment and then its live playlist naming its
// last few segments with their checksums.
func crashChild(root string) {
	s, err := New(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var mu sync.Mutex // one line at a time on stdout
	var wg sync.WaitGroup
	for w := range crashWriters {
		wg.Go(func() {
			if err := crashWriter(ctx, s, w, func() {
				mu.Lock()
				fmt.Printf("playlist %d\n", w)
				mu.Unlock()
			}); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
		})
	}
	wg.Wait()
	os.Exit(0)
}

func crashWriter(ctx context.Context, s *Store, w int, wrote func()) error {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(time.Now().UnixNano()))
	seed[8] = byte(w)
	fill := rand.NewChaCha8(seed)
	rng := rand.New(fill)
	// Earlier rounds' segments are kept: start numbering after them.
	base := time.Now().UnixNano()
	var recent []string
	for n := 0; ctx.Err() == nil; n++ {
		payload := make([]byte, 100<<10+rng.IntN(1200<<10))
		fill.Read(payload)
		sum := sha256.Sum256(payload)
		body := append(sum[:], payload...)
		key := fmt.Sprintf("seg/%d/%d-%06d.m4s", w, base, n)
		// Small reads: many writes per segment, so kills land inside them.
		if err := s.Put(ctx, key, &chunked{r: bytes.NewReader(body), n: 32 << 10}, int64(len(body)), ""); err != nil {
			return err
		}
		recent = append(recent, fmt.Sprintf("#SEG %s %d %x", key, len(body), sum))
		recent = recent[max(0, len(recent)-5):]
		pl := strings.Join(recent, "\n") + "\n"
		plSum := sha256.Sum256([]byte(pl))
		pl += "#SUM " + hex.EncodeToString(plSum[:]) + "\n"
		if err := s.Put(ctx, fmt.Sprintf("pl/%d.m3u8", w), strings.NewReader(pl), int64(len(pl)), ""); err != nil {
			return err
		}
		wrote()
	}
	return nil
}

// chunked hands out at most n bytes per Read (and hides bytes.Reader's
// WriteTo, which would write all at once).
type chunked struct {
	r io.Reader
	n int
}

func (c *chunked) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

// verifyStore checks every listed object is whole and every segment a
// playlist names exists and matches. It returns the playlists seen.
func verifyStore(t *testing.T, root string) int {
	t.Helper()
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	segs, err := s.List(ctx, "seg/")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range segs {
		if err := checkSegment(readAll(t, s, o.Key)); err != nil {
			t.Errorf("segment %s: %v", o.Key, err)
		}
	}
	pls, err := s.List(ctx, "pl/")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range pls {
		for _, line := range checkPlaylist(t, o.Key, readAll(t, s, o.Key)) {
			f := strings.Fields(line) // #SEG key size sum
			body := readAll(t, s, f[1])
			sum := sha256.Sum256(body[min(len(body), 32):])
			if strconv.Itoa(len(body)) != f[2] || hex.EncodeToString(sum[:]) != f[3] {
				t.Errorf("%s names %s (%s bytes, sha256 %s): found %d bytes, sha256 %x", o.Key, f[1], f[2], f[3], len(body), sum)
			}
		}
	}
	return len(pls)
}

func checkSegment(b []byte) error {
	if len(b) < 32 {
		return fmt.Errorf("%d bytes: torn", len(b))
	}
	if sum := sha256.Sum256(b[32:]); !bytes.Equal(sum[:], b[:32]) {
		return fmt.Errorf("%d bytes whose checksum does not match: torn or partial", len(b))
	}
	return nil
}

// checkPlaylist checks the playlist's own checksum and returns its lines.
func checkPlaylist(t *testing.T, key string, b []byte) []string {
	t.Helper()
	s := string(b)
	i := strings.LastIndex(s, "#SUM ")
	if i < 0 {
		t.Errorf("playlist %s has no #SUM line: torn (%d bytes)", key, len(b))
		return nil
	}
	sum := sha256.Sum256([]byte(s[:i]))
	if strings.TrimSpace(s[i+5:]) != hex.EncodeToString(sum[:]) {
		t.Errorf("playlist %s: checksum mismatch: torn or mixed", key)
		return nil
	}
	return strings.Split(strings.TrimSpace(s[:i]), "\n")
}

func readAll(t *testing.T, s *Store, key string) []byte {
	t.Helper()
	rc, _, err := s.Get(context.Background(), key, nil)
	if err != nil {
		t.Errorf("Get %s: %v", key, err)
		return nil
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Errorf("read %s: %v", key, err)
	}
	return b
}

func countTemp(t *testing.T, root string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tempPrefix) {
			n++
		}
		return nil
	})
	return n
}
