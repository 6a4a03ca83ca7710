package upload

import (
	"os"
	"path/filepath"
	"strings"
)

// renameDurably moves a finished upload's data file into the folder
// store at dst (below root) so that a power cut cannot leave the master
// under its name without its bytes: tusd never fsyncs what it writes, and
// the rename, like every new folder on the way (masters/{id}/ is always
// new), is only on the disk once its folder is fsynced.
func renameDurably(bin, dst, root string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := syncPath(bin); err != nil {
		return err
	}
	if err := os.Rename(bin, dst); err != nil {
		return err
	}
	for d := filepath.Dir(dst); ; d = filepath.Dir(d) {
		if err := syncPath(d); err != nil {
			return err
		}
		if d == root || !strings.HasPrefix(d, root) || filepath.Dir(d) == d {
			return nil
		}
	}
}

// syncPath fsyncs a file or a folder.
func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
