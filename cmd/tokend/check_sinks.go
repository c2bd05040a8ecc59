package main

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/sink"
)

// checkSinks checks the directory of every sink as tokend would at its
// first write: as check-config's own user, or run as root, as the service
// user when it exists (the unit runs tokend as that user). A directory
// that does not exist yet is a note: tokend creates it when its parent is
// a safe directory of its own (as /run/tokend is under the unit). A
// directory other users may write (sticky, as /tmp) is a warning: tokend
// writes there safely, but any of them can create the sink's name first
// and so stop its writes.
func checkSinks(cfg *config.Config) (notes, warnings, problems []string) {
	uid := os.Geteuid()
	if uid == 0 {
		if u, err := user.Lookup(serviceUser); err == nil {
			if id, err := strconv.Atoi(u.Uid); err == nil {
				uid = id
			}
		}
	}
	for _, name := range sortedGrantNames(cfg) {
		for i, s := range cfg.Grants[name].Sinks {
			shared, err := sink.CheckPath(s.Path, uid)
			switch {
			case err == nil && shared:
				warnings = append(warnings, fmt.Sprintf("grants.%s.sinks[%d].path: %s is a directory other users may write: any of them can create %s first and stop every write of the sink; prefer a directory only tokend may write (such as /run/tokend/sinks)", name, i, filepath.Dir(s.Path), filepath.Base(s.Path)))
			case err == nil:
			case errors.Is(err, os.ErrNotExist):
				notes = append(notes, fmt.Sprintf("note: grants.%s.sinks[%d]: %v; tokend creates it when its parent is a directory of its own, else writing fails", name, i, err))
			default:
				problems = append(problems, fmt.Sprintf("grants.%s.sinks[%d].path: %v", name, i, err))
			}
		}
	}
	return notes, warnings, problems
}

func sortedGrantNames(cfg *config.Config) []string {
	return slices.Sorted(maps.Keys(cfg.Grants))
}
