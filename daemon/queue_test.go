package daemon

// queuedLen is how many grants wait for a worker: the tests' view of the
// queue, which the daemon itself never needs.
func (q *workQueue) queuedLen() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
