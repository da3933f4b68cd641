package projections_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

func resumeWith(user, device, session, prev, jti string, expires time.Time) *eventpb.Event {
	return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED, User: user, Device: device, Session: session, Node: "n1", Actor: user,
		Body: &eventpb.Event_SessionReconnected{SessionReconnected: &eventpb.SessionReconnected{PreviousSession: prev,
			Token: &eventpb.ClientToken{Id: jti, ExpiresUnixNano: expires.UnixNano()}}}}
}

func refreshTo(user, session, jti string, expires time.Time) *eventpb.Event {
	return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_TOKEN_REFRESHED, User: user, Session: session, Actor: user,
		Body: &eventpb.Event_SessionTokenRefreshed{SessionTokenRefreshed: &eventpb.SessionTokenRefreshed{
			Token: &eventpb.ClientToken{Id: jti, ExpiresUnixNano: expires.UnixNano()}}}}
}

func holderIDs(st *projections.State, jti string) []string {
	var ids []string
	for _, h := range st.TokenHolders(jti) {
		ids = append(ids, h.ID)
	}
	return ids
}

func pendingIDs(ch projections.Change) []string {
	var ids []string
	for _, p := range ch.Pending {
		ids = append(ids, p.Session)
	}
	return ids
}

// TestTokenIndexFollowsSessions: the per-token index behind TokenHolders
// and a revocation by jti follows a token as sessions resume with it,
// refresh away from and onto it, end, and come back under the same id;
// a state loaded from a snapshot answers the same. A stale index (a
// holder not moved on a refresh, not dropped at an end, not rebuilt on a
// load) names the wrong sessions here.
func TestTokenIndexFollowsSessions(t *testing.T) {
	s := newScript(t)
	exp := t0.Add(time.Hour)
	s.at(0, connectWith("u", "phone", "s1", "tok-a", t0, exp))
	s.at(1*time.Second, connectWith("u", "laptop", "s2", "tok-a", t0, exp))  // one token, two sessions
	s.at(2*time.Second, refreshTo("u", "s1", "tok-b", exp))                  // s1 moves to tok-b
	s.at(3*time.Second, resumeWith("u", "laptop", "s3", "s2", "tok-a", exp)) // s2 resumes as s3
	s.at(4*time.Second, disconnect("s2", eventpb.DisconnectCause_DISCONNECT_CAUSE_SUPERSEDED))
	s.at(5*time.Second, connectWith("v", "tv", "s4", "tok-c", t0, exp))
	s.at(6*time.Second, refreshTo("v", "s4", "tok-a", exp)) // s4 moves onto tok-a
	s.at(7*time.Second, disconnect("s9", eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED))

	want := map[string][]string{"tok-a": {"s3", "s4"}, "tok-b": {"s1"}, "tok-c": nil, "": nil}
	check := func(name string, st *projections.State) {
		t.Helper()
		if err := projections.CheckIndexes(st); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for jti, ids := range want {
			if got := holderIDs(st, jti); !slices.Equal(got, ids) {
				t.Fatalf("%s: holders of %q = %v; want %v", name, jti, got, ids)
			}
		}
	}
	check("applied", s.st)
	loaded, err := projections.UnmarshalState(mustMarshal(t, s.st))
	if err != nil {
		t.Fatal(err)
	}
	check("loaded from a snapshot", loaded)

	// The same revocations on the applied state and on the loaded one
	// mark the same sessions.
	other := &script{t: t, st: loaded, seq: s.seq}
	for _, sc := range []*script{s, other} {
		if ch := sc.at(8*time.Second, revokeToken("tok-a", exp)); !slices.Equal(pendingIDs(ch), []string{"s3", "s4"}) {
			t.Fatalf("revoke tok-a: pending %v; want [s3 s4]", pendingIDs(ch))
		}
		if ch := sc.at(9*time.Second, revokeToken("tok-b", exp)); !slices.Equal(pendingIDs(ch), []string{"s1"}) {
			t.Fatalf("revoke tok-b: pending %v; want [s1]", pendingIDs(ch))
		}
		if ch := sc.at(10*time.Second, revokeToken("tok-c", exp)); len(ch.Pending) != 0 {
			t.Fatalf("revoke tok-c, which no live session holds any more: pending %v; want none", pendingIDs(ch))
		}
		// Ends leave the index; a session id that comes back is indexed
		// once, under its new token.
		sc.at(11*time.Second, disconnect("s3", eventpb.DisconnectCause_DISCONNECT_CAUSE_REVOKED))
		sc.at(12*time.Second, disconnect("s1", eventpb.DisconnectCause_DISCONNECT_CAUSE_REVOKED))
		sc.at(13*time.Second, connectWith("u", "phone", "s1", "tok-d", t0, exp))
		if err := projections.CheckIndexes(sc.st); err != nil {
			t.Fatal(err)
		}
		if got := holderIDs(sc.st, "tok-a"); !slices.Equal(got, []string{"s4"}) {
			t.Fatalf("holders of tok-a after s3 ended = %v; want [s4]", got)
		}
		if got := holderIDs(sc.st, "tok-b"); got != nil {
			t.Fatalf("holders of tok-b after s1 ended = %v; want none", got)
		}
		if got := holderIDs(sc.st, "tok-d"); !slices.Equal(got, []string{"s1"}) {
			t.Fatalf("holders of tok-d = %v; want [s1]", got)
		}
	}
	if !slices.Equal(mustMarshal(t, s.st), mustMarshal(t, loaded)) {
		t.Fatal("the applied and the loaded state differ after the same records")
	}
}

// TestIndexesMatchTables runs the property-test generator's logs (tokens
// shared between sessions, resumes, refreshes of live and unknown
// sessions, revocations, kicks' refusals, bans) and checks after every
// record that the token index, the per-user index and the expiry heaps
// agree with the tables (CheckIndexes), that TokenHolders is what a pass
// over every live session finds, and that a state loaded from a snapshot
// of it carries on with indexes as good.
func TestIndexesMatchTables(t *testing.T) {
	seeds, steps := 40, 600
	if testing.Short() {
		seeds, steps = 10, 400
	}
	policies := []projections.Policy{{}, {MaxPerUser: 2}, {OnePerDevice: true}}
	checked := 0
	for seed := range seeds {
		g := newGen(uint64(5000+seed), policies[seed%len(policies)])
		g.decide = seed%2 == 1
		st := projections.New()
		for i := range steps {
			r := g.next()
			st.Apply(r)
			if i%37 == 36 {
				var err error
				if st, err = projections.UnmarshalState(mustMarshal(t, st)); err != nil {
					t.Fatal(err)
				}
			}
			if err := projections.CheckIndexes(st); err != nil {
				t.Fatalf("seed %d seq %d: %v", seed, r.Seq, err)
			}
			scan := map[string][]string{}
			for _, sess := range st.Sessions(projections.Filter{}) { // oldest connect first
				if sess.TokenID != "" {
					scan[sess.TokenID] = append(scan[sess.TokenID], sess.ID)
				}
			}
			for k := range g.nextTk + 2 {
				jti := fmt.Sprintf("t%d", k)
				if got := holderIDs(st, jti); !slices.Equal(got, scan[jti]) {
					t.Fatalf("seed %d seq %d: holders of %q = %v; want %v", seed, r.Seq, jti, got, scan[jti])
				}
				if len(scan[jti]) > 1 {
					checked++
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no token held by two live sessions at once; want the generator to reach it")
	}
}
