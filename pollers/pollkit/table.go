package pollkit

import (
	"fmt"
	"strings"

	"github.com/jobbridge/jobbridge/bridge"
)

// Row is one line of a vendor's mapping table.
type Row struct {
	// Native is the vendor's status value as documented.
	Native string
	State  bridge.State
	// SubState tells apart natives that share a State ("paused").
	SubState string
}

// Mapping is what a native status maps to.
type Mapping struct {
	State    bridge.State
	SubState string
}

// StateTable maps native statuses to canonical states. Lookups ignore case
// and surrounding white space (vendors disagree with their own docs on case:
// TSO's REST says COMPLETED where its UI says Completed). A StateTable is
// immutable, so one value may be shared.
type StateTable struct {
	rows []Row
	m    map[string]Mapping
}

// NewStateTable builds a table. It rejects invalid states, empty natives and
// two rows for the same native after normalisation, so a typo in a table
// fails at start-up rather than mapping a status twice.
func NewStateTable(rows ...Row) (*StateTable, error) {
	t := &StateTable{rows: append([]Row(nil), rows...), m: make(map[string]Mapping, len(rows))}
	for _, r := range rows {
		k := normalizeNative(r.Native)
		if k == "" {
			return nil, fmt.Errorf("mapping row %+v: the native status is empty", r)
		}
		if !r.State.Valid() {
			return nil, fmt.Errorf("mapping row %q: %q is not a canonical state", r.Native, r.State)
		}
		if _, dup := t.m[k]; dup {
			return nil, fmt.Errorf("mapping row %q: the table already maps %q", r.Native, k)
		}
		t.m[k] = Mapping{State: r.State, SubState: r.SubState}
	}
	return t, nil
}

// MustStateTable is NewStateTable for tables written in source code.
func MustStateTable(rows ...Row) *StateTable {
	t, err := NewStateTable(rows...)
	if err != nil {
		panic(err)
	}
	return t
}

// Lookup maps native; values the table does not know map to
// bridge.StateUnknown.
func (t *StateTable) Lookup(native string) Mapping {
	m, ok := t.Known(native)
	if !ok {
		return Mapping{State: bridge.StateUnknown}
	}
	return m
}

// Known maps native and says whether the table knows it.
func (t *StateTable) Known(native string) (Mapping, bool) {
	m, ok := t.m[normalizeNative(native)]
	return m, ok
}

// Rows returns a copy of the rows, in table order, for a test per row.
func (t *StateTable) Rows() []Row { return append([]Row(nil), t.rows...) }

func normalizeNative(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
