package fsm

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/hashicorp/go-memdb"
)

// Table names.
const (
	tApps       = "apps"
	tConfig     = "config"
	tReleases   = "releases"
	tSlugs      = "slugs"
	tFormation  = "formation"
	tDomains    = "domains"
	tFeatures   = "features"
	tUsers      = "users"
	tTokens     = "tokens"
	tNodes      = "nodes"
	tRequests   = "requests"
	tMeta       = "meta"
	indexID     = "id"
	indexApp    = "app"
	indexName   = "name"
	indexAppKey = "app_key"
)

// table describes one memdb table and how its records are decoded from a
// snapshot. Adding a table for a new record type (dynos, builds, drains,
// regions, ...) is one entry in tables().
type table struct {
	schema *memdb.TableSchema
	decode func([]byte) (any, error)
}

func decodeAs[T any](b []byte) (any, error) {
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		return nil, err
	}
	return v, nil
}

func str(field string) memdb.Indexer { return &memdb.StringFieldIndex{Field: field} }

func idx(name string, unique, allowMissing bool, ix memdb.Indexer) *memdb.IndexSchema {
	return &memdb.IndexSchema{Name: name, Unique: unique, AllowMissing: allowMissing, Indexer: ix}
}

func byApp() *memdb.IndexSchema { return idx(indexApp, false, false, str("AppID")) }

func compound(fields ...memdb.Indexer) memdb.Indexer {
	return &memdb.CompoundIndex{Indexes: fields}
}

// tables is every replicated table: the core ones here, and those of each
// area (dynos, blobs, logs, certificates) from their own files.
func tables() map[string]table {
	t := coreTables()
	for _, more := range []map[string]table{dynoTables(), blobTables(), drainTables(), certTables(), buildTables()} {
		for name, tb := range more {
			t[name] = tb
		}
	}
	for name, tb := range t {
		tb.schema.Name = name
	}
	return t
}

func coreTables() map[string]table {
	return map[string]table{
		tApps: {decode: decodeAs[App], schema: &memdb.TableSchema{Indexes: map[string]*memdb.IndexSchema{
			indexID:   idx(indexID, true, false, str("ID")),
			indexName: idx(indexName, true, false, str("Name")),
		}}},
		tConfig: {decode: decodeAs[ConfigVars], schema: &memdb.TableSchema{Indexes: map[string]*memdb.IndexSchema{
			indexID: idx(indexID, true, false, str("AppID")),
		}}},
		tReleases: {decode: decodeAs[Release], schema: &memdb.TableSchema{Indexes: map[string]*memdb.IndexSchema{
			indexID:     idx(indexID, true, false, str("ID")),
			indexApp:    byApp(),
			indexAppKey: idx(indexAppKey, true, false, compound(str("AppID"), &memdb.IntFieldIndex{Field: "Version"})),
		}}},
		tSlugs: {decode: decodeAs[Slug], schema: &memdb.TableSchema{Indexes: map[string]*memdb.IndexSchema{
			indexID:  idx(indexID, true, false, str("ID")),
			indexApp: byApp(),
		}}},
		tFormation: {decode: decodeAs[Formation], schema: &memdb.TableSchema{Indexes: map[string]*memdb.IndexSchema{
			indexID:     idx(indexID, true, false, str("ID")),
			indexApp:    byApp(),
			indexAppKey: idx(indexAppKey, true, false, compound(str("AppID"), str("Type"))),
		}}},
		tDomains: {decode: decodeAs[Domain], schema: &memdb.TableSchema{Indexes: map[string]*memdb.IndexSchema{
			indexID:   idx(indexID, true, false, str("ID")),
			indexApp:  byApp(),
			indexName: idx(indexName, true, false, str("Hostname")),
		}}},
		tFeatures: {decode: decodeAs[AppFeature], schema: &memdb.TableSchema{Indexes: map[string]*memdb.IndexSchema{
			indexID:  idx(indexID, true, false, compound(str("AppID"), str("Name"))),
			indexApp: byApp(),
		}}},
		tUsers: {decode: decodeAs[User], schema: &memdb.TableSchema{Indexes: map[string]*memdb.IndexSchema{
			indexID:   idx(indexID, true, false, str("ID")),
			indexName: idx(indexName, true, false, str("Email")),
		}}},
		tTokens: {decode: decodeAs[Token], schema: &memdb.TableSchema{Indexes: map[string]*memdb.IndexSchema{
			indexID:   idx(indexID, true, false, str("ID")),
			indexName: idx(indexName, true, false, str("Hash")),
			"user":    idx("user", false, false, str("UserID")),
		}}},
		tNodes: {decode: decodeAs[Node], schema: &memdb.TableSchema{Indexes: map[string]*memdb.IndexSchema{
			indexID: idx(indexID, true, false, str("Name")),
		}}},
		tRequests: {decode: decodeAs[request], schema: &memdb.TableSchema{Indexes: map[string]*memdb.IndexSchema{
			indexID: idx(indexID, true, false, str("ID")),
			"at":    idx("at", false, false, &memdb.IntFieldIndex{Field: "AtUnix"}),
		}}},
		tMeta: {decode: decodeAs[Meta], schema: &memdb.TableSchema{Indexes: map[string]*memdb.IndexSchema{
			indexID: idx(indexID, true, false, str("Key")),
		}}},
	}
}

func newDB() (*memdb.MemDB, error) {
	s := &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{}}
	for name, tb := range tables() {
		s.Tables[name] = tb.schema
	}
	db, err := memdb.NewMemDB(s)
	if err != nil {
		return nil, fmt.Errorf("fsm: building schema: %w", err)
	}
	return db, nil
}

// TableNames lists the replicated tables (for metrics and debugging).
func TableNames() []string {
	var names []string
	for name := range tables() {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
