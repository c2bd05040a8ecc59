package store

import "time"

// FleetGrant is one grant as the fleet sees it.
type FleetGrant struct {
	Owner    string // instance holding the lease; "" when none
	Held     bool   // this instance holds it
	Conflict string // non-empty: this instance's definition differs (why)
}

// FleetHealth is this instance's view of the fleet.
type FleetHealth struct {
	Quorum     bool          // etcd answers with a quorum
	LeaseOK    bool          // this instance's lease is alive
	WatchOK    bool          // the watch is running
	WatchLag   time.Duration // age of the newest event applied, when behind
	GrantsHeld int
}

// StartPage is the one-time start page of a pending authorization as a
// fleet keeps it (fleet mode), so that the instance the load balancer
// sends the start URL to can serve it; it is stored under the hex SHA-256
// of the start id. State and AuthURL are secrets (the state redeems the
// authorization; the URL carries it and the PKCE challenge): a backend
// keeps them sealed (Codec.EncodeStart). The bbolt file never holds one:
// a single host keeps its start pages in memory.
type StartPage struct {
	State    string
	AuthURL  string
	Secure   bool // the redirect URI is https: the binding cookie is Secure
	Deadline time.Time
}
