package rtmp

import (
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Connections that announce much and send little must not make the server
// hold what they announce. Not parallel: it measures the process's heap,
// so it runs while the parallel tests of the package are still paused.
func TestAnnouncedSizesDoNotAmplifyMemory(t *testing.T) {
	const (
		conns = 300
		// Without the guard the first phase holds 300 × 10 MiB; with it a
		// held connection costs its buffers only (~50 KiB).
		maxGrowth = 50 << 20
		// What may stay allocated once every connection is gone.
		maxLeft = 4 << 20
	)
	e := newEnv(t, 30*time.Second)
	base := heapInuse()

	// The reported attack: chunk size 10 MiB, a 10 MiB message, 10 bytes.
	hostile := append(setChunkSize(10<<20), chunk0(3, 10<<20, 20, make([]byte, 10))...)
	cs := openRaw(t, e, conns, hostile)
	peak := watchHeap(t, e, base, maxGrowth, 60*time.Second, func() bool { return activeConns(e.srv) == 0 })
	t.Logf("10 MiB chunk size and message, %d connections: heap growth at most %.1f MB", conns, mb(peak))
	waitFor(t, 10*time.Second, "every refusal to be logged", func() bool {
		return strings.Count(e.logs.String(), `reason="chunk size 10485760 requested`) == conns
	})
	if logs := e.logs.String(); !strings.Contains(logs, `msg="connection refused before publishing" component=rtmp remote=127.0.0.1:`) {
		t.Errorf("refusal not logged with the remote address:\n%s", logs)
	}
	closeAll(cs)

	// Within the limits: chunk size and message at the caps, 10 bytes of
	// body. These connections stay open, so the heap is watched for a while
	// (nothing tells when the server has read the last bytes).
	held := append(setChunkSize(maxChunkSize), chunk0(3, maxSetupMessage, 20, make([]byte, 10))...)
	cs = openRaw(t, e, conns, held)
	settle := time.Now().Add(2 * time.Second)
	peak = watchHeap(t, e, base, maxGrowth, 10*time.Second, func() bool {
		return activeConns(e.srv) == conns && time.Now().After(settle)
	})
	t.Logf("chunk size and message at the caps, %d connections held: heap growth at most %.1f MB", conns, mb(peak))

	closeAll(cs)
	var left int64
	waitFor(t, 30*time.Second, "the heap to return near its baseline", func() bool {
		left = int64(heapInuse()) - int64(base)
		return activeConns(e.srv) == 0 && left < maxLeft
	})
	t.Logf("after closing: %.1f MB above the baseline", mb(uint64(max(left, 0))))
}

// watchHeap polls the heap until done holds, failing as soon as it has
// grown by more than limit over base. It returns the largest growth seen.
func watchHeap(t *testing.T, e *env, base, limit uint64, timeout time.Duration, done func() bool) uint64 {
	t.Helper()
	var peak uint64
	deadline := time.Now().Add(timeout)
	for {
		finished := done()
		if h := heapInuse(); h > base {
			peak = max(peak, h-base)
		}
		if peak > limit {
			t.Fatalf("heap grew by %.1f MB (limit %.1f MB) with %d connections open",
				mb(peak), mb(limit), activeConns(e.srv))
		}
		if finished {
			return peak
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s; %d connections still open", timeout, activeConns(e.srv))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// openRaw opens n connections that do the RTMP handshake and then send
// payload, and leaves them open.
func openRaw(t *testing.T, e *env, n int, payload []byte) []net.Conn {
	t.Helper()
	cs := make([]net.Conn, 0, n)
	for range n {
		c := e.dial()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := clientHandshake(c); err != nil {
			t.Fatalf("handshake: %v", err)
		}
		if _, err := c.Write(payload); err != nil {
			t.Fatalf("write: %v", err)
		}
		_ = c.SetDeadline(time.Time{})
		cs = append(cs, c)
	}
	return cs
}

// clientHandshake is the client side of a plain RTMP handshake: C0+C1,
// read S0+S1+S2, C2 echoing S1.
func clientHandshake(c net.Conn) error {
	c0c1 := make([]byte, 1+1536)
	c0c1[0] = 3
	if _, err := c.Write(c0c1); err != nil {
		return err
	}
	s := make([]byte, 1+1536+1536)
	if _, err := io.ReadFull(c, s); err != nil {
		return err
	}
	_, err := c.Write(s[1 : 1+1536])
	return err
}

func closeAll(cs []net.Conn) {
	for _, c := range cs {
		c.Close()
	}
}

func activeConns(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func mb(n uint64) float64 { return float64(n) / (1 << 20) }
