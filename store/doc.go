/*
Package store keeps tokend's state in a single bbolt file: the token set and
refresh bookkeeping of every grant, a short history of refresh attempts,
client registrations, pending authorizations and cached provider metadata.
It owns the file's layout, its schema version and migrations, the record
format (Codec: sealed and authenticated whole with the store key, shared
with the etcd store) and the file lock. It knows nothing of HTTP or OAuth.

# Opening

Open creates the file when it is missing, with mode 0600 whatever the umask.
It refuses a file or directory that other users could write to
(ErrUnsafePermissions), a file that is not a tokend store (ErrCorrupt), and a
file another process has open (ErrLocked, after Options.LockTimeout, 2 s by
default: bbolt's flock with Options.Timeout, so a second daemon fails instead
of hanging). The lock is per open file description, so a second Open of the
same file in the same process fails too.

A file with content is checked before it is opened for writing: its bbolt meta
pages are read and validated and its size compared with the pages they
claim, then it is opened read-only and every page read, and it must carry
tokend's format marker (or have no bucket at all, which is what a crash
during the very first Open leaves). Only then is it opened read-write. A file
that fails is reported and never written to, not even by bbolt's own
housekeeping. An empty (0-byte) file is initialised.

# Layout

The file has six top-level buckets:

	meta       format  "tokend-store"
	           schema  schema version, uint64 big endian
	           created creation time, RFC 3339
	           check   sealed check value (only when encrypted)
	tokens     grant name -> token record
	history    grant name -> bucket of attempt records, keyed by a
	           big-endian sequence number; the newest 20 are kept
	pending    hex SHA-256 of the state -> pending authorization record
	clients    client name -> client record
	providers  provider name -> discovery metadata (JSON)

Records are JSON objects with explicit field names (snake_case), so renaming a
Go field does not change the format. Times are stored in UTC; a zero time
reads back as the zero time. A pending authorization is keyed by a hash of its
state, so the state, which is what redeems it, is not on disk; PendingFor
therefore returns records with an empty State.

The schema version is checked at Open. A file at an older version is
migrated in the Open transaction, one step at a time (migrations[i] takes
version i to i+1; version 1 is the initial layout); a file at a newer
version than this build knows is refused with ErrNewerSchema.

# Record format

With a key (Options.Key, 32 bytes; config.ParseKey reads a key file) every
record is sealed whole with AES-256-GCM (RecordSchema, schema 2):

	"tokend-aead-1:" || 96-bit random nonce || ciphertext and tag of the JSON

Its additional data is a domain string and the record's kind (the bucket
name, or for the etcd store's own records "starts" and "defs") and key,
each preceded by its length: the grant or client name, the provider name,
the hash of a pending authorization's state (a history attempt is bound
to its grant's name). So nobody without the key can read a record, plant
one, alter one, or move one to another key or kind; such a record is
refused with ErrCorrupt, whose message names the record and never holds
its content, and the other records still load. Codec gives another backend
(the etcd store of fleet mode) the same format, and adds what the bbolt
file does not need: a token record's writer and write time inside the
sealed record, the start pages and the fleet's grant definitions.
Cached provider metadata is bound to the provider's name; the issuer it
names is inside, authenticated with it, and the daemon uses it only for
the configured issuer. An authorization-code pending authorization without
a PKCE verifier is refused even so: tokend always makes one.

Without a key records are the same JSON, unsealed: there is nothing to
authenticate with, and someone who can write the file can change any
record. The bucket structure and record keys (grant and client names) are
never sealed.

The meta bucket holds a sealed check value, bound to the schema version,
so a wrong key fails at Open with ErrWrongKey, not later with garbage, and
a schema set back by someone without the key fails the same way. A sealed
file opened without a key fails with ErrKeyRequired. A key given for a
file that holds unsealed records fails with ErrNotEncrypted (run `tokend
rekey`); an empty file given a key simply becomes sealed. Rekey re-seals
every record under a new key, or unseals them, and replaces the check
value, in one transaction.

Schema 1 sealed only the secret fields, each bound to bucket, record and
field, and left the rest clear and unauthenticated. The migration to
schema 2 re-encodes tokens, clients, history and provider metadata and
drops pending authorizations (they live minutes; one of the old format
cannot be told from one planted without the key). After it, a record of
the old format is refused.

Token, Client and Pending print with their secrets replaced by "[REDACTED]"
through fmt (%v, %+v, %s, %#v) and log/slog.

# Writes

PutToken joins concurrent callers into one bbolt transaction (DB.Batch), so
many refreshes finishing together cost one fsync. It returns once the batch
is committed and synced. Other writes are plain bbolt Update transactions.
Reads are bbolt View transactions; values are copied out, as a bbolt value
lives only as long as its transaction.

# Caveats

bbolt allows one writer at a time. UpdateToken runs its function inside the
write transaction: the function must not call the Store (a write transaction
inside another deadlocks) and should be quick, as every writer waits for it.

Rekey holds off every other operation until it is done. It rewrites every
record; the old ciphertexts remain in free pages of the file until bbolt
reuses them, so a key believed compromised calls for a fresh file, not a
Rekey alone.

Sealing protects a copy of the file (a backup, a stolen disk) from a reader
without the key. It does not protect against a process that can read both
the file and the key, such as root on the host.

Records are decoded whole: a record that does not authenticate (a file
edited by hand) fails its reads with ErrCorrupt, naming the record;
PrunePending deletes such a pending authorization. Sealing does not stop
someone who can write the file from deleting records, or from putting back
an older copy of the whole file or of a record (each still authenticates).

Opening reads every page of the file; that is cheap for tokend's sizes (a few
thousand records), not for a large file.

NoSync gives up durability for speed; it is for tests and benchmarks only.
*/
package store
