package hub

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// eventMessages turns events into the watermill messages the Publisher
// records: the one place an event crosses into watermill. Each is encoded
// once (the payload is what the log stores), names this node when it names
// none, and goes under a fresh ULID, which a log may use as the
// idempotency key of a retried publish. ctx bounds the wait for the log to
// take them.
func eventMessages(ctx context.Context, node string, events []*eventpb.Event) ([]*message.Message, error) {
	msgs := make([]*message.Message, len(events))
	for i, ev := range events {
		if ev.Node == "" {
			ev.Node = node
		}
		b, err := proto.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("%w: encode event: %v", ErrInvalid, err)
		}
		msgs[i] = message.NewMessage(watermill.NewULID(), b)
		msgs[i].SetContext(ctx)
	}
	return msgs, nil
}
