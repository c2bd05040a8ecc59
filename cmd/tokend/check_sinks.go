package main

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/user"
	"slices"
	"strconv"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/daemon"
)

// checkSinks checks the directory of every sink as tokend would at its
// first write: as check-config's own user, or run as root, as the service
// user when it exists (the unit runs tokend as that user). A directory
// that does not exist yet is a note: tokend creates it when its parent is
// a safe directory of its own (as /run/tokend is under the unit).
func checkSinks(cfg *config.Config) (notes, problems []string) {
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
			err := daemon.CheckSinkPath(s.Path, uid)
			switch {
			case err == nil:
			case errors.Is(err, os.ErrNotExist):
				notes = append(notes, fmt.Sprintf("note: grants.%s.sinks[%d]: %v; tokend creates it when its parent is a directory of its own, else writing fails", name, i, err))
			default:
				problems = append(problems, fmt.Sprintf("grants.%s.sinks[%d].path: %v", name, i, err))
			}
		}
	}
	return notes, problems
}

func sortedGrantNames(cfg *config.Config) []string {
	return slices.Sorted(maps.Keys(cfg.Grants))
}
