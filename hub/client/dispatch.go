package client

import (
	"context"
	"sync"

	"github.com/sessionledger/sessionledger/hub/hubpb"
)

// The dispatcher is the one goroutine that runs the application's code:
// the OnFrame, OnNotification, OnConnect and OnDisconnect callbacks, and
// the sends on the Notifications and Disconnects channels. The network
// side (run, and each stream's reader and writer) queues what happened,
// in order, and never waits for it to be handled, with one exception
// that Close ends: before connecting again, run waits until the
// dispatcher has handled everything of the previous session. So Close,
// which cancels the network side and waits only for it, returns from any
// goroutine, the callbacks and the goroutines they wait on included, and
// a slow callback never holds up pongs.

type eventKind uint8

const (
	evFrame      eventKind = iota + 1 // a frame for OnFrame and/or a notification to hand over
	evConnect                         // a Welcome: OnConnect
	evDisconnect                      // an end or a failed attempt: OnDisconnect and Disconnects
)

// event is one thing for the dispatcher.
type event struct {
	kind  eventKind
	ls    *stream             // the stream an evFrame came on (counted in ls.waiting)
	frame *hubpb.ServerFrame  // for OnFrame (nil without OnFrame)
	note  *hubpb.Notification // to hand over (nil: none)
	sess  *Session            // evConnect
	disc  *Disconnect         // evDisconnect
}

// queue is the dispatcher's input: unbounded, but each stream's reader
// may have at most backlogLimit events in it (pushFrom), and run queues
// a stream only after the previous one's were handled (waitIdle).
type queue struct {
	mu              sync.Mutex
	items           []event
	closed          bool // the network side has ended: nothing more comes
	pushed, handled uint64
	wake            chan struct{} // a token when items or closed changed
	progress        chan struct{} // a token when handled grew
}

func newQueue() *queue {
	return &queue{wake: make(chan struct{}, 1), progress: make(chan struct{}, 1)}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (q *queue) push(ev event) {
	q.mu.Lock()
	q.items = append(q.items, ev)
	q.pushed++
	q.mu.Unlock()
	signal(q.wake)
}

// pushFrom queues an event read from the stream ev.ls; false if that
// stream has backlogLimit events waiting already.
func (q *queue) pushFrom(ev event) bool {
	q.mu.Lock()
	if ev.ls.waiting >= backlogLimit {
		q.mu.Unlock()
		return false
	}
	ev.ls.waiting++
	q.items = append(q.items, ev)
	q.pushed++
	q.mu.Unlock()
	signal(q.wake)
	return true
}

// close says nothing more will be queued.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	signal(q.wake)
}

// next waits for the oldest event; false once the queue is closed and
// empty.
func (q *queue) next() (event, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			ev := q.items[0]
			q.items[0] = event{}
			q.items = q.items[1:]
			if len(q.items) == 0 {
				q.items = nil // let the array go
			}
			q.mu.Unlock()
			return ev, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return event{}, false
		}
		<-q.wake
	}
}

// finished records that ev was handled.
func (q *queue) finished(ev event) {
	q.mu.Lock()
	if ev.ls != nil {
		ev.ls.waiting--
	}
	q.handled++
	q.mu.Unlock()
	signal(q.progress)
}

// waitIdle waits until every event queued so far has been handled; false
// if ctx ended first. Only run calls it.
func (q *queue) waitIdle(ctx context.Context) bool {
	q.mu.Lock()
	target := q.pushed
	q.mu.Unlock()
	for {
		q.mu.Lock()
		idle := q.handled >= target
		q.mu.Unlock()
		if idle {
			return true
		}
		select {
		case <-q.progress:
		case <-ctx.Done():
			return false
		}
	}
}

// dispatch handles the queue until the network side has ended and
// everything it queued was handled, then ends the client: the channels
// and Done close (and Err reports why).
func (c *Client) dispatch() {
	for {
		ev, ok := c.q.next()
		if !ok {
			break
		}
		c.handle(ev)
		c.q.finished(ev)
	}
	close(c.notes)
	close(c.discs)
	close(c.done)
}

func (c *Client) handle(ev event) {
	switch ev.kind {
	case evFrame:
		if ev.frame != nil {
			c.cfg.onFrame(ev.frame)
		}
		if ev.note != nil {
			c.deliver(ev.ls, ev.note)
		}
	case evConnect:
		if ev.sess.LogRewound {
			c.floor = 0 // connect cleared last
		}
		if ev.sess.ResumedFrom == "" {
			// A fresh session gets the notifications recorded after its
			// connect; earlier ones were never addressed to it.
			c.floor = max(c.floor, ev.sess.Seq)
		}
		if c.cfg.onConnect != nil {
			c.cfg.onConnect(*ev.sess)
		}
	case evDisconnect:
		if c.cfg.onDisconnect != nil {
			c.cfg.onDisconnect(*ev.disc)
		}
		select {
		case c.discs <- *ev.disc:
		default:
			select {
			case <-c.discs:
			default:
			}
			c.discs <- *ev.disc // the dispatcher is the only sender, so there is room now
		}
	}
}

// deliver hands n, which came on ls, to the application: to OnNotification
// or into the Notifications channel, waiting for the application as long
// as ls lives and the client is not closing. A notification whose seq is
// not above the last one delivered is a duplicate (a redelivery
// overlapping what this process saw before) and is dropped. Once ls has
// ended, or the client is closing, what does not fit into the channel at
// once is dropped unacknowledged, and so is everything after it from ls.
func (c *Client) deliver(ls *stream, n *hubpb.Notification) {
	if n.GetSeq() <= max(c.floor, c.last.Load().GetSeq()) {
		c.duplicates.Add(1)
		return
	}
	if ls.dropping {
		return
	}
	note := toNote(n)
	live := !ls.hasEnded() && c.closing.Err() == nil
	if c.cfg.onNotification != nil {
		if !live {
			ls.dropping = true
			return
		}
		c.cfg.onNotification(note)
		c.handedOver(n, note)
		return
	}
	if live {
		select {
		case c.notes <- note:
			c.handedOver(n, note)
			return
		case <-ls.ended:
		case <-c.closing.Done():
		}
	}
	select {
	case c.notes <- note:
		c.handedOver(n, note)
	default:
		ls.dropping = true
	}
}

// handedOver accounts for n, which the application took as note.
func (c *Client) handedOver(n *hubpb.Notification, note Notification) {
	c.delivered.Add(1)
	if note.Redelivered {
		c.redelivered.Add(1)
	}
	c.last.Store(n)
	if c.cfg.autoAck {
		c.Ack(note.Seq)
	}
}
