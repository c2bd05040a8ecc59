package etcdstore

// PauseKeepAlive stops (true) or resumes (false) the lease's renewals and
// the campaigns, as a process stopped by SIGSTOP would: the lease runs
// out on the server while this instance still believes what it last knew.
func (s *Store) PauseKeepAlive(p bool) { s.paused.Store(p) }

// RevokeLease ends this instance's lease on the server, as its expiry
// would, without telling the instance.
func (s *Store) RevokeLease() error {
	s.mu.Lock()
	lease := s.lease
	s.mu.Unlock()
	ctx, cancel := s.req()
	defer cancel()
	_, err := s.cli.Revoke(ctx, lease)
	return err
}

// StopRekeyAfter makes Rekey stop, as a kill would, once n records are
// re-sealed (0: never).
func StopRekeyAfter(n int) {
	if n == 0 {
		rekeyStop = nil
		return
	}
	rekeyStop = func(resealed int) bool { return resealed >= n }
}
