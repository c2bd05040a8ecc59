package config

// Users and groups: the names in listen.socket_group, operators and every
// grant's readers are looked up once, while the configuration is validated,
// through the Loader's lookup functions (the seam tests use to control the
// user database); the Config then carries the ids.

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
)

// Loader loads configurations. The zero Loader, which Load and Parse use,
// looks users and groups up in the system's user database.
type Loader struct {
	// LookupUser and LookupGroup look up a user or group by name, as
	// os/user's user.Lookup and user.LookupGroup do (the defaults when
	// nil): a name that does not exist is a user.UnknownUserError or a
	// user.UnknownGroupError.
	LookupUser  func(name string) (*user.User, error)
	LookupGroup func(name string) (*user.Group, error)
	// Preset, when set, is called on the decoded file before defaults and
	// validation: it may add what the file leaves out, which is then
	// checked like the rest (tokend dev predefines its provider, its
	// clients and its directory this way).
	Preset func(*Config)
}

// userID resolves a user name to its uid. A name that is all digits and
// names no user is taken as a uid. Messages carry no package prefix: they
// follow a file, line and key path.
func (l Loader) userID(name string) (uint32, error) {
	lookup := l.LookupUser
	if lookup == nil {
		lookup = user.Lookup
	}
	u, err := lookup(name)
	if err == nil {
		id, perr := strconv.ParseUint(u.Uid, 10, 32)
		if perr != nil {
			return 0, fmt.Errorf("user %q has a non-numeric uid %q", name, u.Uid)
		}
		return uint32(id), nil
	}
	if id, perr := strconv.ParseUint(name, 10, 32); perr == nil {
		return uint32(id), nil
	}
	var unknown user.UnknownUserError
	if errors.As(err, &unknown) {
		return 0, fmt.Errorf("unknown user %q", name)
	}
	return 0, fmt.Errorf("looking up user %q: %w", name, err)
}

// groupID resolves a group name to its gid, as userID does for users.
func (l Loader) groupID(name string) (uint32, error) {
	lookup := l.LookupGroup
	if lookup == nil {
		lookup = user.LookupGroup
	}
	g, err := lookup(name)
	if err == nil {
		id, perr := strconv.ParseUint(g.Gid, 10, 32)
		if perr != nil {
			return 0, fmt.Errorf("group %q has a non-numeric gid %q", name, g.Gid)
		}
		return uint32(id), nil
	}
	if id, perr := strconv.ParseUint(name, 10, 32); perr == nil {
		return uint32(id), nil
	}
	var unknown user.UnknownGroupError
	if errors.As(err, &unknown) {
		return 0, fmt.Errorf("unknown group %q", name)
	}
	return 0, fmt.Errorf("looking up group %q: %w", name, err)
}

// resolveReaders looks up the names of r, recording their ids in r, and
// reports every unknown name and out-of-range id under path.
func (l Loader) resolveReaders(p *problems, path string, r *Readers) {
	r.ids = nil
	var userIDs, groupIDs []uint32
	ok := true
	for i, name := range r.Users {
		id, err := l.userID(name)
		if err != nil {
			p.errorf(fmt.Sprintf("%s.users[%d]", path, i), "%v", err)
			ok = false
			continue
		}
		userIDs = append(userIDs, id)
	}
	for i, name := range r.Groups {
		id, err := l.groupID(name)
		if err != nil {
			p.errorf(fmt.Sprintf("%s.groups[%d]", path, i), "%v", err)
			ok = false
			continue
		}
		groupIDs = append(groupIDs, id)
	}
	for i, id := range r.UIDs {
		if !idInRange(id) {
			p.errorf(fmt.Sprintf("%s.uids[%d]", path, i), "%d is out of range", id)
		}
	}
	for i, id := range r.GIDs {
		if !idInRange(id) {
			p.errorf(fmt.Sprintf("%s.gids[%d]", path, i), "%d is out of range", id)
		}
	}
	if ok && len(userIDs)+len(groupIDs) > 0 {
		r.ids = &readerIDs{users: userIDs, groups: groupIDs}
	}
}

// resolveSocketGroup looks up listen.socket_group, recording its gid. An
// unset group becomes DefaultSocketGroup when that group exists; else it
// stays unset (the socket keeps tokend's own group).
func (l Loader) resolveSocketGroup(p *problems, ls *Listen) {
	ls.socketGID, ls.groupResolved = 0, false
	if ls.SocketGroup == "" {
		if id, err := l.groupID(DefaultSocketGroup); err == nil {
			ls.SocketGroup, ls.socketGID, ls.groupResolved = DefaultSocketGroup, id, true
		}
		return
	}
	id, err := l.groupID(ls.SocketGroup)
	if err != nil {
		p.errorf("listen.socket_group", "%v", err)
		return
	}
	ls.socketGID, ls.groupResolved = id, true
}
