package client

// Held returns how many notifications (and frames for OnFrame) of the
// current stream the client holds for the application: read, not yet
// taken. The tests use it to know that the reader has read what the
// server sent while the application takes nothing.
func Held(c *Client) int {
	c.mu.Lock()
	ls := c.live
	c.mu.Unlock()
	if ls == nil {
		return 0
	}
	c.q.mu.Lock()
	defer c.q.mu.Unlock()
	return ls.waiting
}
