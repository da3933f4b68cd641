package client_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sessionledger/sessionledger/hub/client"
	"github.com/sessionledger/sessionledger/hub/hubpb"
)

// Connect, receive a notification, acknowledge it, leave.
func ExampleDial() {
	h, stop := exampleHub() // an in-process hubd on 127.0.0.1
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, h.addr, client.WithUser("alice", "phone"))
	if err != nil {
		fmt.Println("connect:", err)
		return
	}
	defer c.Close()

	h.notify("alice", "chat.message", `{"from":"bob","text":"hi"}`) // hubctl notify --user alice ...
	n := <-c.Notifications()
	fmt.Printf("%s %s\n", n.Topic, n.Payload)
	c.Ack(n.Seq) // processed: a resume will not ask for it again
	// Output: chat.message {"from":"bob","text":"hi"}
}

// An operator kicks the session and says not to come back: the client
// reports why and ends instead of reconnecting.
func ExampleClient_Err() {
	h, stop := exampleHub()
	defer stop()

	ctx := context.Background()
	c, err := client.Dial(ctx, h.addr, client.WithUser("mallory", "laptop"))
	if err != nil {
		fmt.Println("connect:", err)
		return
	}
	defer c.Close()

	h.kick(&hubpb.KickRequest{User: "mallory", Reason: "spamming the lobby", Reconnect: hubpb.Reconnect_RECONNECT_NOT_ALLOWED})
	<-c.Done()
	var d *client.Disconnect
	if errors.As(c.Err(), &d) {
		fmt.Println("cause:", d.Cause)
		fmt.Println("reason:", d.Reason)
		fmt.Println("reconnect:", d.Reconnect)
		fmt.Println("by:", d.Actor)
	}
	// Output:
	// cause: kicked
	// reason: spamming the lobby
	// reconnect: not_allowed
	// by: ops
}

// Kicked with "come back after 300ms": the client waits, resumes its
// session, and gets what was sent meanwhile, marked as redelivered.
func ExampleClient_Disconnects() {
	h, stop := exampleHub()
	defer stop()

	// So that the output does not depend on timing, the reconnect also
	// waits until the notification below is recorded (an application
	// leaves WithSleep alone).
	recorded := make(chan struct{})
	holdReconnect := client.WithSleep(func(ctx context.Context, d time.Duration) error {
		select {
		case <-recorded:
		case <-ctx.Done():
			return ctx.Err()
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})

	ctx := context.Background()
	c, err := client.Dial(ctx, h.addr, client.WithUser("bob", "tablet"), client.WithAutoAck(), holdReconnect)
	if err != nil {
		fmt.Println("connect:", err)
		return
	}
	defer c.Close()
	first := c.Session().ID

	h.kick(&hubpb.KickRequest{User: "bob", Reason: "rebalancing", ReconnectAfterMs: 300})
	d := <-c.Disconnects()
	fmt.Printf("%s: %s; reconnect %s %s; will reconnect: %v\n", d.Cause, d.Reason, d.Reconnect, d.ReconnectAfter, d.WillReconnect)

	h.notify("bob", "score", "42") // recorded while bob is away
	close(recorded)
	n := <-c.Notifications()
	fmt.Println(n.Topic, string(n.Payload), "redelivered:", n.Redelivered)
	fmt.Println("resumed the first session:", c.Session().ResumedFrom == first)
	// Output:
	// kicked: rebalancing; reconnect after 300ms; will reconnect: true
	// score 42 redelivered: true
	// resumed the first session: true
}

// A banned user's connect is refused; Dial returns the refusal.
func ExampleDial_refused() {
	h, stop := exampleHub()
	defer stop()

	h.ban(&hubpb.BanRequest{User: "eve", Reason: "abuse report 42"})
	_, err := client.Dial(context.Background(), h.addr, client.WithUser("eve", "phone"))
	var d *client.Disconnect
	if errors.As(err, &d) {
		fmt.Println(d.Cause, d.RejectCode, d.Reason, d.Reconnect)
	}
	// Output: rejected banned abuse report 42 not_allowed
}

// Notifications can go to a callback instead of the channel; with
// WithAutoAck each is acknowledged once the callback returns.
func ExampleOnNotification() {
	h, stop := exampleHub()
	defer stop()

	got := make(chan string, 1)
	c, err := client.Dial(context.Background(), h.addr, client.WithUser("carol", "watch"), client.WithAutoAck(),
		client.OnNotification(func(n client.Notification) { got <- n.Topic }))
	if err != nil {
		fmt.Println("connect:", err)
		return
	}
	defer c.Close()
	h.notify("carol", "reminder", "")
	fmt.Println(<-got)
	// Output: reminder
}
