// Package gcburst lowers the garbage collector's target (GOGC) for the
// length of a burst of allocation in which the live heap only grows, such
// as parsing a large configuration or loading every stored token at
// start-up. At the default GOGC of 100 the heap grows to twice what was
// live at the previous collection; late in such a burst that is nearly
// twice what the burst keeps, memory the process never needs again but
// that sets its peak RSS.
package gcburst

import "runtime/debug"

// Lower sets GOGC to percent, unless it is already lower or the collector
// is off (a GOGC chosen by whoever runs the process is never raised), and
// returns the function that restores the previous value. Bursts may nest
// or overlap: an inner one finds GOGC already at percent and restores
// nothing.
func Lower(percent int) (restore func()) {
	prev := debug.SetGCPercent(percent)
	if prev < 0 || prev <= percent {
		debug.SetGCPercent(prev)
		return func() {}
	}
	return func() { debug.SetGCPercent(prev) }
}
