package api

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// Range paging as the Platform API does it:
//
//	Range: <field> [[|]]<start>..[<end>][; max=N][, order=asc|desc]
//
// A list that does not fit comes back 206 Partial Content with a
// Next-Range header the client sends as its next Range.
const (
	defaultPageSize = 200
	maxPageSize     = 1000
)

type pageRange struct {
	field     string
	start     string
	exclusive bool
	end       string
	max       int
	desc      bool
}

func parseRange(h string, fields ...string) (pageRange, error) {
	pr := pageRange{field: fields[0], max: defaultPageSize}
	h = strings.TrimSpace(h)
	if h == "" {
		return pr, nil
	}
	spec, params, _ := strings.Cut(h, ";")
	spec = strings.TrimSpace(spec)
	field, bounds, _ := strings.Cut(spec, " ")
	known := false
	for _, f := range fields {
		known = known || f == field
	}
	if !known {
		return pr, apiErr(http.StatusRequestedRangeNotSatisfiable, "requested_range_not_satisfiable", "Range field %q is not supported here; use one of: %s.", field, strings.Join(fields, ", "))
	}
	pr.field = field
	bounds = strings.TrimSpace(bounds)
	if bounds != "" {
		start, end, ok := strings.Cut(bounds, "..")
		if !ok {
			return pr, apiErr(http.StatusRequestedRangeNotSatisfiable, "requested_range_not_satisfiable", "Range %q is malformed: expected `%s [start]..[end]`.", h, field)
		}
		if strings.HasPrefix(start, "]") {
			pr.exclusive = true
			start = start[1:]
		}
		pr.start, pr.end = strings.TrimPrefix(start, "["), strings.TrimSuffix(end, "]")
	}
	for _, p := range strings.FieldsFunc(params, func(r rune) bool { return r == ',' || r == ';' }) {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch strings.TrimSpace(k) {
		case "max":
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 1 {
				return pr, apiErr(http.StatusRequestedRangeNotSatisfiable, "requested_range_not_satisfiable", "Range max %q must be a positive number.", v)
			}
			pr.max = min(n, maxPageSize)
		case "order":
			switch strings.TrimSpace(v) {
			case "asc":
			case "desc":
				pr.desc = true
			default:
				return pr, apiErr(http.StatusRequestedRangeNotSatisfiable, "requested_range_not_satisfiable", "Range order must be asc or desc.")
			}
		case "":
		default:
			return pr, apiErr(http.StatusRequestedRangeNotSatisfiable, "requested_range_not_satisfiable", "Unknown Range parameter %q.", k)
		}
	}
	return pr, nil
}

// pageItem is one listed resource with its sortable keys.
type pageItem struct {
	keys map[string]string
	num  map[string]int // numeric keys (version) compare as numbers
	v    any
}

func (it pageItem) less(field string, o pageItem) bool {
	if n, ok := it.num[field]; ok {
		return n < o.num[field]
	}
	return it.keys[field] < o.keys[field]
}

func (it pageItem) key(field string) string {
	if n, ok := it.num[field]; ok {
		return strconv.Itoa(n)
	}
	return it.keys[field]
}

// cmpKey compares an item's key with a bound given in the Range header.
func (it pageItem) cmpKey(field, bound string) int {
	if n, ok := it.num[field]; ok {
		b, err := strconv.Atoi(bound)
		if err != nil {
			return 0
		}
		switch {
		case n < b:
			return -1
		case n > b:
			return 1
		}
		return 0
	}
	return strings.Compare(it.keys[field], bound)
}

func writePage(w http.ResponseWriter, r *http.Request, items []pageItem, fields ...string) error {
	pr, err := parseRange(r.Header.Get("Range"), fields...)
	if err != nil {
		return err
	}
	sort.SliceStable(items, func(i, j int) bool {
		if pr.desc {
			return items[j].less(pr.field, items[i])
		}
		return items[i].less(pr.field, items[j])
	})
	var sel []pageItem
	for _, it := range items {
		if pr.start != "" {
			c := it.cmpKey(pr.field, pr.start)
			if pr.desc {
				c = -c
			}
			if c < 0 || (c == 0 && pr.exclusive) {
				continue
			}
		}
		if pr.end != "" {
			c := it.cmpKey(pr.field, pr.end)
			if pr.desc {
				c = -c
			}
			if c > 0 {
				continue
			}
		}
		sel = append(sel, it)
	}
	status := http.StatusOK
	if len(sel) > pr.max {
		last := sel[pr.max-1]
		sel = sel[:pr.max]
		order := "asc"
		if pr.desc {
			order = "desc"
		}
		w.Header().Set("Next-Range", fmt.Sprintf("%s ]%s..; max=%d, order=%s", pr.field, last.key(pr.field), pr.max, order))
		status = http.StatusPartialContent
	}
	out := make([]any, len(sel))
	for i, it := range sel {
		out[i] = it.v
	}
	if len(sel) > 0 {
		w.Header().Set("Content-Range", fmt.Sprintf("%s %s..%s", pr.field, sel[0].key(pr.field), sel[len(sel)-1].key(pr.field)))
	}
	w.Header().Set("Accept-Ranges", strings.Join(fields, ", "))
	writeJSON(w, status, out)
	return nil
}
