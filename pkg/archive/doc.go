// Package archive turns backup sources into self-checking byte streams
// and back: a directory tree (WriteDirectory, RestoreDirectory) or a
// PostgreSQL database through pg_dump and pg_restore (WritePostgres,
// RestorePostgres). Verify re-reads a stream of either kind and checks
// every checksum in it. Everything streams: memory use depends on neither
// file nor dump sizes, only on fixed buffers and the compressor's window.
//
// The package knows nothing of blob stores, accounts or schedules; the
// backup worker pipes these streams into a blob.Store and records the
// returned Manifest with the snapshot.
//
// # Stream format, version 1
//
// An archive is an 8-byte fixed header followed by one zstd stream (one
// or more frames, each with its content checksum):
//
//	offset 0  "LVQARC"            magic
//	offset 6  0x01                format version
//	offset 7  'd' or 'p'          kind: directory or postgres
//	offset 8  zstd(body)
//
// The body is a sequence of records, each a type byte, a payload length
// as an unsigned varint (encoding/binary), and the payload:
//
//	'A' header   JSON {"format":1,"kind":…,"created_at":…}; always first
//	'E' entry    JSON {"path"|"path_bytes","type","mode","mod_time","size","link"|"link_bytes"}
//	'D' data     1 to 1 MiB of a file's (or the dump's) contents
//	'S' sum      32 bytes: SHA-256 of the contents just ended
//	'T' trailer  JSON {"entries","files","source_bytes"}: counts of what came before
//	'Z' end      32 bytes: SHA-256 of every body byte before this record,
//	             except data payloads (which the sums cover); always last
//
// A directory body is A, then one E per entry, then T, Z. A file's entry
// is followed by its D records and one S, even when it is empty;
// directories and symlinks have none. The first entry is the root, ".",
// a directory. Paths are relative with '/' separators and no "", "." or
// ".." components; names that are not valid UTF-8 are carried as bytes
// (path_bytes, link_bytes; base64 in JSON). Entries come in the order of
// a depth-first walk that visits each directory's names in byte order,
// which readers enforce: every entry sorts strictly after the one before
// it component by component (so none repeats) and lies in a directory
// entry that came earlier (so none lies under a symlink). Mode holds
// io/fs.FileMode bits: the type bit, permissions, setuid, setgid and
// sticky. Times are RFC 3339 with nanoseconds, in UTC.
//
// A postgres body is A, the dump's D records, S, T, Z: the dump is the
// output of pg_dump --format=custom --compress=0, whose length is not
// known in advance.
//
// Readers refuse records over their limits (64 KiB for JSON records,
// 1 MiB for data), unknown record types and JSON fields, sizes that
// disagree with the data, and anything after Z. Any such fault, a failed
// checksum (zstd's, a file's, the dump's or the end record's) or a
// truncated stream is ErrCorrupt; a version or kind byte this release does
// not know is ErrUnsupportedFormat instead, since a newer release may have
// written it.
//
// # Consistency while the source changes
//
// WriteDirectory reads a live tree without snapshots of its own, so it
// decides as follows. An entry that disappears between being listed and
// being opened is left out, as if it had been deleted just before the
// backup; a directory that disappears after it was opened stays in the
// archive, empty. Each directory is opened as an os.Root and its entries
// are looked up relative to it, and every opened entry must be the one
// that was listed, so a directory swapped for a symlink mid-walk can
// never pull files from outside the source into the archive. An entry
// replaced by another, or a file whose identity, size or modification
// time changes while it is read, fails the whole backup with
// ErrSourceChanged: an archive never holds a file torn between two
// versions. Sockets, named
// pipes and devices hold no data a restore could recreate; they are left
// out and listed in Manifest.Skipped. Hard links are stored as separate
// files. Ownership and symlinks' own times are not recorded.
//
// # Restores
//
// Restores check as they go and never trust a byte before its checksum:
// RestoreDirectory writes each file under a temporary name in its
// directory and renames it into place only once its SHA-256 matched, and
// removes everything it wrote from a target that was empty if the archive
// turns out damaged. It writes only through an os.Root opened at the
// target. Runs of zero bytes are restored as holes, so sparse files stay
// sparse. RestorePostgres spools the dump to a temporary file, checks it,
// and only then runs pg_restore in a single transaction.
package archive
