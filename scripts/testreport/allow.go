package main

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"strings"
)

// allowEntry lets one test (or a path.Match pattern of tests) of one
// package be skipped under CI.
type allowEntry struct {
	pkg, test string
}

type allowList []allowEntry

// loadAllowList reads lines "package TestName  # why". The package is
// the import path or its part inside the module (store/pgmeta); blank
// lines and lines that are only a comment are ignored. An entry without
// a reason is refused: a skip allowed in CI must say why.
func loadAllowList(file string) (allowList, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var list allowList
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		entry, why, _ := strings.Cut(line, "#")
		fields := strings.Fields(entry)
		if len(fields) != 2 || strings.TrimSpace(why) == "" {
			return nil, fmt.Errorf("%s:%d: want \"package TestName  # why\"", file, n)
		}
		if _, err := path.Match(fields[1], ""); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", file, n, err)
		}
		list = append(list, allowEntry{pkg: strings.TrimPrefix(fields[0], "./"), test: fields[1]})
	}
	return list, sc.Err()
}

// allows reports whether the skip of test in pkg (an import path) is on
// the list.
func (l allowList) allows(pkg, test string) bool {
	for _, e := range l {
		if pkg != e.pkg && !strings.HasSuffix(pkg, "/"+e.pkg) {
			continue
		}
		if ok, _ := path.Match(e.test, test); ok {
			return true
		}
	}
	return false
}
