package fsstore

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// tempPrefix starts the name of every file a Put is still writing. List
// skips such files, keys may not contain them, and New removes stale ones.
const tempPrefix = ".tmp-"

// defaultStaleTemp is how old a temp file must be before New removes it.
// A Put in flight (in another streamd process sharing the folder) writes
// its temp file continuously, so its modification time stays recent; ten
// minutes without a write means its writer is gone.
const defaultStaleTemp = 10 * time.Minute

// syncFile flushes f's data to the disk.
func (s *Store) syncFile(f *os.File) error {
	if s.noSync {
		return nil
	}
	if s.onSync != nil {
		s.onSync(f.Name())
	}
	return f.Sync()
}

// syncDir flushes a folder's entries (a rename, a new file or folder) to
// the disk: on Linux a file's own fsync does not cover its name.
func (s *Store) syncDir(dir string) error {
	if s.noSync {
		return nil
	}
	if s.onSync != nil {
		s.onSync(dir)
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	// Some file systems (and platforms) cannot fsync a folder; they
	// order metadata themselves, so there is nothing more to do there.
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		return nil
	}
	return err
}

// mkdirs is os.MkdirAll that also fsyncs the parent of every folder it
// creates: an object renamed into a new folder is lost after a power cut
// if the folder's own entry never reached the disk. Folders that exist
// already cost one stat, so the common Put (into a known folder) pays
// nothing extra here.
func (s *Store) mkdirs(dir string) error {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return &fs.PathError{Op: "mkdir", Path: d, Err: syscall.ENOTDIR}
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || filepath.Dir(d) == d {
			return err
		}
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		d := missing[i]
		// ErrExist: a concurrent Put made it. Sync its parent all the
		// same, since that Put may not have done so yet.
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := s.syncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

// removeStaleTemp deletes temp files older than staleTemp: what Puts
// interrupted by a crash or a kill left. It is best effort (an error only
// leaves a file that List ignores anyway), and it walks the whole store
// once per New, which is a start-up cost proportional to the number of
// objects.
func (s *Store) removeStaleTemp() {
	cutoff := time.Now().Add(-s.staleTemp)
	filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		if fi, err := d.Info(); err == nil && !fi.ModTime().After(cutoff) {
			os.Remove(p)
		}
		return nil
	})
}
