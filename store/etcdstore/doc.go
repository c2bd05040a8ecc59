// Package etcdstore is the store of fleet mode (store.backend: etcd):
// several tokend instances share their grants through etcd, and each
// grant has exactly one refresher. It owns the layout of the keys under
// the prefix, the instance's lease, the ownership of grants, the fencing
// of writes and the watch that keeps every instance's tokens current. It
// implements the daemon's Store and Fleet interfaces (daemon/storage.go)
// without importing the daemon.
//
// # Keys
//
// Under Prefix (default /tokend/):
//
//	meta                 format "tokend-store", schema, sealed key check (JSON, clear)
//	tokens/<grant>       token record, with the writer and the time inside
//	history/<grant>      the last store.HistoryLen attempts, newest first, one record
//	clients/<name>       client record (as in the bbolt file)
//	providers/<name>     cached provider metadata
//	pending/<sha256>     pending authorization, by the hash of its state
//	starts/<sha256>      start page of a pending authorization, by the hash of its id
//	owners/<grant>       instance refreshing the grant (bound to its lease)
//	defs/<grant>         the fleet's definition of the grant: fingerprint, writer
//	instances/<instance> live instances (bound to their leases)
//	locks/<name>         fleet-wide locks (bound to the holder's lease)
//	rekey                present while `tokend rekey` runs (the new key's check)
//
// A start page (starts/) is taken by a single delete that returns the
// value it deleted, so of concurrent takers on any instances exactly one
// gets it; it carries its deadline in the clear and PrunePending deletes
// it with the pending authorizations. The bbolt file has no such record
// (a single host keeps its start pages in memory), and `tokend store
// copy` does not copy them, nor pending authorizations.
//
// Every record of tokens/, history/, clients/, providers/, pending/,
// starts/ and defs/ is sealed whole by store.Codec, as in the bbolt file
// (see "Record format" in package store): AES-256-GCM with the same key on
// every instance, bound to the record's kind and key. etcd never holds a
// plaintext secret, and someone who can write the prefix without the key
// cannot plant, alter or move a record: such a record is refused with
// store.ErrCorrupt (a token record by the watch and at load, a definition
// is ignored and written over by the next instance that sets it, a
// pending authorization or start page is deleted by PrunePending). What
// they can do is delete records, and put back an older value of one: the
// daemon refuses a token record older than the one it holds (the
// generation is inside the sealed record). owners/, instances/ and locks/
// are lease-bound and not sealed: they hold names only. `tokend store
// copy` re-encodes records between the backends. A prefix holding other
// keys and no meta record, a newer schema, a wrong key
// (store.ErrWrongKey) or a missing one (store.ErrKeyRequired) are refused
// at Open.
//
// The meta record's check is bound to the schema. A prefix of schema 1
// (secret fields sealed one by one, the rest clear, a clear header
// before each token record) is migrated by the first instance that opens
// it (migrate.go): every record is rewritten by a transaction on its mod
// revision, pending authorizations and start pages are deleted, and the
// meta record is marked last, so a killed migration resumes. It refuses a
// meta record of schema 1 that was rewritten, or is younger than a record
// (planted again to have records of the old format migrated). Instances of
// the previous release must be stopped first: they can read nothing after
// the migration, and what they write is refused.
//
// # Ownership
//
// Each instance has one lease (LeaseTTL) that it renews every quarter of
// its life, one request at a time; the lease's end is tracked locally as
// the send time of the last answered renewal plus the TTL (by Clock), so
// the local estimate is never later than the server's. For each grant an
// instance campaigns with a transaction create(owners/<grant>) == 0 →
// put owners/<grant> = instance with the lease. It takes at most its
// share, ceil(grants / live instances) + Slack, in a random order, and
// none while another live instance holds fewer than it does; an instance
// holding two or more grants beyond the lightest other live instance hands
// grants back (down to ceil(grants / live instances), at least one) at its
// next campaign. So N instances end up with about grants/N each: the
// first instance of a fleet takes everything and hands grants back as
// others register, and an instance that lost its lease and returns gets
// its part again within a few campaigns (never a grant another promised to
// a refresh through Holds until that promise ran out). When an instance dies its lease expires, etcd
// deletes its owner keys, and the others, watching owners/, campaign at
// once: take-over within LeaseTTL and a moment. Close revokes the lease,
// so a clean stop hands over at once.
//
// A grant's definition (fingerprint) is recorded by the first instance
// naming it; an instance whose fingerprint differs neither campaigns for
// nor refreshes it, and GrantInfo.Conflict says why. The writer of the
// record may replace it (its own definition changed), and so may anyone
// once the writer is gone.
//
// Live instances are the keys under instances/ bound to a lease: a key
// without one (written by anyone who can write the prefix) does not
// count. A grant found ownerless by two campaigns in a row is taken
// beyond the share (the instances counted did not take it), and kept a
// while, so no grant stays without a refresher while an instance could
// take it.
//
// # Fencing
//
// PutToken is a transaction: If(owners/<grant> == this instance with this
// lease, mod_revision(tokens/<grant>) == the revision this instance last
// saw) Then(put tokens/<grant>, put history/<grant>) Else store.ErrFenced.
// The last seen revision is what this instance wrote, read (Token,
// EachToken) or was told by Watch, whether or not the record decoded.
// PutAuthorized compares the revision only. So a stale refresher can never
// overwrite a newer chain, and one that lost its lease can never write at
// all. A record written since that does not decode (torn, forged without
// the key) is no chain: the write is made again on its revision, so the
// token the provider issued is never dropped for it.
//
// What fencing cannot cover is the request to the provider itself: Holds
// is true only with at least margin of lease left, so a refresh is sent
// only when it can finish before the lease can end. The residual window
// is a pause of the process (SIGSTOP, a VM freeze, a swap storm) longer
// than the remaining lease between Holds and the provider receiving the
// request: another instance may then take the grant and refresh with the
// same refresh token. The stale instance's write is fenced, and a
// provider with reuse detection revokes the chain, which the daemon
// reports as reauthorization_required. A margin larger than the request
// timeout makes that window the pause length beyond margin, not the
// request's duration.
//
// # Watch
//
// Watch follows tokens/ from the revision of the last EachToken and calls
// fn for each record written by another instance (the envelope names the
// writer) that is newer than what this instance has seen. A broken watch
// resumes from its last revision; after a compaction it reads tokens/
// afresh and delivers what is newer. Retries back off with jitter (50 ms
// doubling to 2 s), and a resync first waits a random part of a second,
// so a fleet losing etcd or meeting a compaction does not come back in
// one stampede.
//
// A record that does not decode is skipped and reported (logged,
// BadRecords) by EachToken and Watch; the other grants load.
//
// # Rekey
//
// Rekey re-seals every record with a new key while no instance runs (it
// refuses otherwise): it puts the rekey marker, which instances meet when
// they register (Open fails, a lease retaken waits), re-seals each record
// in a transaction on its revision (a record opens with either key
// meanwhile, so a rekey killed midway is run again and carries on),
// re-seals the provider cache through Provider and PutProvider, drops
// pending authorizations, start pages and the grants' definitions (the
// instances record them again), and last switches the meta
// record's check and deletes the marker in one transaction. An instance
// that lost its lease checks the key again before registering anew.
//
// # Losing etcd
//
// Every request is bounded by RequestTimeout (at most DialTimeout): without
// a quorum a call fails with store.ErrUnavailable, it never hangs.
//
// Every request, watch and lease renewal requires a leader
// (clientv3.WithRequireLeader, client.go): a member cut off from its peers
// (alive, reachable, without a leader) refuses it at once instead of
// holding it until its timeout, and it is sent again at once, which the
// client's round-robin balancer sends to the next member. The etcd client
// retries reads itself, not writes; a write refused for want of a leader
// was never proposed, so sending it again is safe. A read is given a part
// of its time per try, so a member that was the leader when it was cut off
// (it holds requests until it steps down) does not use all of it. A token
// write that gets no answer is tried again while the lease could still
// hold; a try applied after all is recognised by its value.
//
// Health describes the cluster, not the member a connection happens to
// use. A renewal that fails is tried again at once; two failures in a row
// mark the quorum lost: Holds is false, Health says so. Any other request
// that failed for want of a quorum makes Holds false until the next
// renewal lands, which it asks for at once: no refresh is sent unless a
// renewal through a leader has just landed. A watch that breaks (its
// member lost its leader) is set up again at once on another member and
// counts as running for 2 s meanwhile; it counts as running once created,
// not at its first event. When quorum returns the renewals resume; a
// lease that expired meanwhile is replaced and the grants campaigned for
// again. Fetches never touch etcd: the daemon serves from memory.
package etcdstore
