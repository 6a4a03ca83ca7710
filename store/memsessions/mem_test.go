package memsessions

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/storetest"
)

func TestContract(t *testing.T) {
	storetest.TestSessions(t, func(t *testing.T) store.Sessions {
		s := New(Options{JanitorInterval: 50 * time.Millisecond})
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// The janitor removes expired keys nobody touches again, a bounded batch
// per tick.
func TestJanitor(t *testing.T) {
	ctx := context.Background()
	s := New(Options{JanitorInterval: 10 * time.Millisecond, JanitorBatch: 50})
	defer s.Close()
	for i := range 200 {
		if err := s.Set(ctx, fmt.Sprint(i), []byte("x"), time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Set(ctx, "keep", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Len() > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d keys left after 5s, want 1", s.Len())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClosed(t *testing.T) {
	s := New(Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Set(context.Background(), "k", nil, 0); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Set after Close: %v, want ErrUnavailable", err)
	}
}
