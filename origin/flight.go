package origin

import (
	"context"
	"fmt"
	"sync"
)

// flightGroup coalesces concurrent loads of one key into a single call:
// when a segment appears in a playlist, every player asks for it within
// the same few milliseconds, and without coalescing each of those misses
// would be its own store read.
//
// Unlike the classic singleflight, the load runs in its own goroutine on a
// context that keeps the first caller's values but not its cancellation:
// one viewer closing the tab must not fail the request of the 999 others
// waiting on the same load. The load is canceled only when every caller
// waiting for it has given up.
type flightGroup[T any] struct {
	mu    sync.Mutex
	calls map[string]*flight[T]
}

type flight[T any] struct {
	done    chan struct{}
	val     T
	err     error
	waiters int // guarded by flightGroup.mu
	cancel  context.CancelFunc
}

// do returns the result of load(key), sharing one call among the callers
// that ask while it runs. A caller whose ctx ends stops waiting and gets
// ctx's error.
func (g *flightGroup[T]) do(ctx context.Context, key string, load func(context.Context) (T, error)) (T, error) {
	g.mu.Lock()
	if g.calls == nil {
		g.calls = map[string]*flight[T]{}
	}
	f, ok := g.calls[key]
	if !ok {
		lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight[T]{done: make(chan struct{}), cancel: cancel}
		g.calls[key] = f
		go g.run(f, key, lctx, load)
	}
	f.waiters++
	g.mu.Unlock()

	select {
	case <-f.done:
		return f.val, f.err
	case <-ctx.Done():
		g.mu.Lock()
		f.waiters--
		if f.waiters == 0 {
			// Nobody wants the result any more: stop the load, and let
			// the next caller start a fresh one rather than join a
			// canceled flight.
			f.cancel()
			if g.calls[key] == f {
				delete(g.calls, key)
			}
		}
		g.mu.Unlock()
		var zero T
		return zero, ctx.Err()
	}
}

func (g *flightGroup[T]) run(f *flight[T], key string, ctx context.Context, load func(context.Context) (T, error)) {
	defer func() {
		// A panic here would take the whole process down (no HTTP
		// server recovers goroutines it did not start); make it the
		// waiters' error instead.
		if p := recover(); p != nil {
			f.err = fmt.Errorf("load %s panicked: %v", key, p)
		}
		f.cancel()
		g.mu.Lock()
		if g.calls[key] == f {
			delete(g.calls, key)
		}
		g.mu.Unlock()
		close(f.done)
	}()
	f.val, f.err = load(ctx)
}

// waiting is how many callers wait on the load of key (tests use it to
// know that all their clients have joined one flight).
func (g *flightGroup[T]) waiting(key string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.calls[key]; ok {
		return f.waiters
	}
	return 0
}
