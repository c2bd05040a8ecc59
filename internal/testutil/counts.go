package testutil

import "sync"

// Counts are named counters, safe for concurrent use: what a fake of a
// metrics interface records, for the test to read. The zero value is
// ready.
type Counts struct {
	mu sync.Mutex
	n  map[string]int
}

// Add counts one more k.
func (c *Counts) Add(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[k]++
}

// Get returns how many k were counted.
func (c *Counts) Get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}
