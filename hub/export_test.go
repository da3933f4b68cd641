package hub

// SetRejectLimits lowers the per-window bounds of connect_rejected
// recording, so tests can reach them with a few connects.
func SetRejectLimits(s *Server, immediate, keys int) {
	s.rejects.mu.Lock()
	defer s.rejects.mu.Unlock()
	s.rejects.maxImmediate, s.rejects.maxKeys = immediate, keys
}
