package cdc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
)

// LSN is a PostgreSQL write-ahead log position.
type LSN = pglogrepl.LSN

// ErrMalformed reports a pgoutput message that cannot be decoded.
var ErrMalformed = errors.New("malformed pgoutput message")

// pgEpochUnix is 2000-01-01T00:00:00Z, the origin of PostgreSQL timestamps.
const pgEpochUnix = 946684800

// reader walks one pgoutput message. The first failure sticks in err and
// every later read returns zero values, so callers check err once.
type reader struct {
	buf []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: short %s", ErrMalformed, what)
	}
	r.buf = nil
}

// take returns the next n bytes (n > 0), or nil when the message is short.
func (r *reader) take(n int, what string) []byte {
	if len(r.buf) < n {
		r.fail(what)
		return nil
	}
	b := r.buf[:n]
	r.buf = r.buf[n:]
	return b
}

func (r *reader) u8(what string) byte {
	if b := r.take(1, what); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16(what string) uint16 {
	if b := r.take(2, what); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32(what string) uint32 {
	if b := r.take(4, what); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64(what string) uint64 {
	if b := r.take(8, what); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *reader) time(what string) time.Time {
	us := int64(r.u64(what))
	return time.Unix(pgEpochUnix, 0).Add(time.Duration(us) * time.Microsecond).UTC()
}

// commit reads the fields Commit and Stream Commit share after the xid:
// flags, commit and end positions, commit time.
func (r *reader) commit(stream bool) (commitLSN, endLSN LSN, ts time.Time) {
	what := [...]string{"commit flags", "commit lsn", "commit end lsn", "commit time"}
	if stream {
		what = [...]string{"stream commit flags", "stream commit lsn", "stream commit end lsn", "stream commit time"}
	}
	r.u8(what[0])
	commitLSN, endLSN = LSN(r.u64(what[1])), LSN(r.u64(what[2]))
	return commitLSN, endLSN, r.time(what[3])
}

// bytes returns n bytes aliasing the message.
func (r *reader) bytes(n int, what string) []byte {
	if n < 0 || len(r.buf) < n {
		r.fail(what)
		return nil
	}
	b := r.buf[:n:n]
	r.buf = r.buf[n:]
	return b
}

// cstring returns a NUL-terminated string (copied: strings outlive the message).
func (r *reader) cstring(what string) string {
	for i, c := range r.buf {
		if c == 0 {
			s := string(r.buf[:i])
			r.buf = r.buf[i+1:]
			return s
		}
	}
	r.fail(what)
	return ""
}

// tuple decodes TupleData into dst, reusing its storage.
func (r *reader) tuple(dst Tuple) Tuple {
	n := int(r.u16("tuple column count"))
	if cap(dst) < n {
		dst = make(Tuple, n)
	}
	dst = dst[:n]
	for i := 0; i < n && r.err == nil; i++ {
		kind := r.u8("tuple column kind")
		switch kind {
		case DatumNull, DatumUnchanged:
			dst[i] = Datum{Kind: kind}
		case DatumText, DatumBinary:
			l := r.u32("tuple column length")
			dst[i] = Datum{Kind: kind, Data: r.bytes(int(l), "tuple column data")}
		default:
			r.err = fmt.Errorf("%w: tuple column kind %q", ErrMalformed, kind)
		}
	}
	if r.err != nil {
		return dst[:0]
	}
	return dst
}

// relation decodes the body of a Relation message.
func (r *reader) relation() *Relation {
	rel := &Relation{
		ID:        r.u32("relation id"),
		Namespace: r.cstring("relation namespace"),
		Name:      r.cstring("relation name"),
	}
	rel.ReplicaIdentity = r.u8("replica identity")
	n := int(r.u16("relation column count"))
	if r.err != nil {
		return nil
	}
	rel.Columns = make([]Column, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		flags := r.u8("column flags")
		name := r.cstring("column name")
		oid := r.u32("column type")
		r.u32("column type modifier")
		rel.Columns = append(rel.Columns, Column{Name: name, TypeOID: oid, Key: flags&1 != 0})
	}
	if r.err != nil {
		return nil
	}
	return rel
}
