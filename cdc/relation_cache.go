package cdc

import "strings"

// Relation describes a table as pgoutput last described it. A schema change
// produces a new *Relation; consumers may cache per pointer.
type Relation struct {
	ID              uint32
	Namespace       string
	Name            string
	ReplicaIdentity byte // 'd' default, 'n' nothing, 'f' full, 'i' index
	Columns         []Column
	// Routes names the other tables whose rules its changes concern: its
	// partition ancestors and, for a partitioned table, its partitions
	// (ADR 15). The stream fills it when the description arrives.
	Routes    []string
	qualified string
}

// Column is one column of a Relation.
type Column struct {
	Name    string
	TypeOID uint32
	Key     bool // part of the replica identity
}

// QualifiedName returns "schema.table".
func (r *Relation) QualifiedName() string { return r.qualified }

// ColumnIndex returns the position of the named column, or -1.
func (r *Relation) ColumnIndex(name string) int {
	for i := range r.Columns {
		if r.Columns[i].Name == name {
			return i
		}
	}
	return -1
}

// NewRelation describes a table outside the stream (replay reads rows with
// SQL, explain takes them from the command line).
func NewRelation(qualified string, cols []Column) *Relation {
	schema, name, ok := strings.Cut(qualified, ".")
	if !ok {
		schema, name = "public", qualified
	}
	r := &Relation{Namespace: schema, Name: name, ReplicaIdentity: 'd', Columns: cols}
	r.qualified = r.Namespace + "." + r.Name
	return r
}

// relationCache maps relation ids to their latest description.
type relationCache map[uint32]*Relation

func (c relationCache) put(r *Relation) {
	if r.Namespace == "" {
		r.Namespace = "pg_catalog"
	}
	r.qualified = r.Namespace + "." + r.Name
	c[r.ID] = r
}
