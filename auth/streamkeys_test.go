package auth

import (
	"os"
	"testing"
)

func TestLoadOrCreateKeepsTheKey(t *testing.T) {
	ks := KeyStore{Dir: t.TempDir()}
	k1, created, err := ks.LoadOrCreate("main")
	if err != nil || !created || len(k1) != 32 {
		t.Fatalf("first: %q %v %v", k1, created, err)
	}
	k2, created, err := ks.LoadOrCreate("main")
	if err != nil || created || k2 != k1 {
		t.Fatalf("second: %q %v %v", k2, created, err)
	}
	fi, err := os.Stat(ks.Path("main"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}
	if other, _, _ := ks.LoadOrCreate("news"); other == k1 {
		t.Fatal("two channels got the same key")
	}
}

func TestDamagedKeyFile(t *testing.T) {
	ks := KeyStore{Dir: t.TempDir()}
	if _, _, err := ks.LoadOrCreate("main"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(ks.Path("main"), []byte("x\n"), 0o600)
	if _, _, err := ks.LoadOrCreate("main"); err == nil {
		t.Fatal("damaged key accepted")
	}
}
