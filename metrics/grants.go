package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// The four series every grant has (token and refresh token expiry, last
// success, state) are kept in one table of plain values and turned into
// metrics only when scraped. As GaugeVec children they cost about 300
// bytes a series, 90 MB at 100,000 grants; a row of the table is under
// 100. The exposition is the same: names, help, labels and values.

// Fields of a grantRow, and the bit of has that says one is set.
const (
	fieldExpiry = iota
	fieldRefreshExpiry
	fieldLastSuccess
	fieldState
)

type grantRow struct {
	values [3]float64 // by field; Unix seconds
	has    uint8      // 1<<field: the series exists
	state  string     // fieldState's label
}

// grantTable is safe for concurrent use. Collect copies what it needs
// under the lock and builds the metrics after, so a scrape of 100,000
// grants does not hold up the daemon's updates.
type grantTable struct {
	mu   sync.Mutex
	rows map[string]grantRow
}

// set stores v in field f of grant's row (ok false removes it); a row
// with nothing left is dropped.
func (t *grantTable) set(grant string, f int, v float64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.rows[grant]
	if ok {
		r.values[f] = v
		r.has |= 1 << f
	} else {
		r.values[f] = 0
		r.has &^= 1 << f
	}
	t.store(grant, r)
}

func (t *grantTable) setState(grant, state string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.rows[grant]
	r.state = state
	r.has |= 1 << fieldState
	t.store(grant, r)
}

func (t *grantTable) store(grant string, r grantRow) {
	if r.has == 0 {
		delete(t.rows, grant)
		return
	}
	t.rows[grant] = r
}

func (t *grantTable) forget(grant string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.rows, grant)
}

// grantGauge is the collector of one field of the table: one metric
// family, registered like any other.
type grantGauge struct {
	t     *grantTable
	field int
	desc  *prometheus.Desc
}

func newGrantGauge(t *grantTable, field int, name, help string) *grantGauge {
	labels := []string{"grant"}
	if field == fieldState {
		labels = append(labels, "state")
	}
	return &grantGauge{t: t, field: field, desc: prometheus.NewDesc(name, help, labels, nil)}
}

func (g *grantGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *grantGauge) Collect(ch chan<- prometheus.Metric) {
	type series struct {
		grant, state string
		v            float64
	}
	g.t.mu.Lock()
	out := make([]series, 0, len(g.t.rows))
	for name, r := range g.t.rows {
		if r.has&(1<<g.field) == 0 {
			continue
		}
		if g.field == fieldState {
			out = append(out, series{name, r.state, 1})
		} else {
			out = append(out, series{grant: name, v: r.values[g.field]})
		}
	}
	g.t.mu.Unlock()
	for _, s := range out {
		if g.field == fieldState {
			ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, s.v, s.grant, s.state)
		} else {
			ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, s.v, s.grant)
		}
	}
}
