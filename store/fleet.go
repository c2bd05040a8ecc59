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
