package objectstest_test

import (
	"testing"

	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/fsstore"
	"github.com/streamd/streamd/store/objectstest"
)

// The folder store is the reference the contract was written from; it
// lives here because its own package belongs to another owner.
func TestFSStoreContract(t *testing.T) {
	objectstest.Run(t, func(t *testing.T) store.Objects {
		s, err := fsstore.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
