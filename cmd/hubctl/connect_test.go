package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/internal/stallproxy"
	"github.com/sessionledger/sessionledger/internal/testtls"
)

// outputLines splits connect's output into its JSON objects.
func outputLines(t *testing.T, out string) []map[string]json.RawMessage {
	t.Helper()
	var lines []map[string]json.RawMessage
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		lines = append(lines, m)
	}
	return lines
}

// disconnectLines returns the client_disconnect objects of connect's output.
func disconnectLines(t *testing.T, out string) []clientDisconnect {
	t.Helper()
	var ds []clientDisconnect
	for _, m := range outputLines(t, out) {
		if raw, ok := m["client_disconnect"]; ok {
			var d clientDisconnect
			if err := json.Unmarshal(raw, &d); err != nil {
				t.Fatal(err)
			}
			ds = append(ds, d)
		}
	}
	return ds
}

// TestConnectPrintsEachNotificationOnce: with --no-ack the resume after a
// kick has everything redelivered; what was printed before is not printed
// again, and the notification missed meanwhile is.
func TestConnectPrintsEachNotificationOnce(t *testing.T) {
	h := startHub(t)
	out, wait := h.connectCmd("--user", "fia", "--device", "d", "--reconnect", "--no-ack", "--for", "4s")
	waitLine(t, out, `"welcome"`)
	for _, topic := range []string{"one", "two"} {
		if code, _, errs := h.ctl("notify", "--user", "fia", "--topic", topic, "--payload", `{}`); code != 0 {
			t.Fatal(errs)
		}
		waitLine(t, out, `"topic":"`+topic+`"`)
	}
	if code, _, errs := h.ctl("kick", "--user", "fia", "--reason", "rebalance", "--reconnect-after", "300ms"); code != 0 {
		t.Fatal(errs)
	}
	waitLine(t, out, `"will_reconnect":true`)
	if code, _, errs := h.ctl("notify", "--user", "fia", "--topic", "three", "--payload", `{}`); code != 0 {
		t.Fatal(errs)
	}
	waitLine(t, out, `"resumed_from"`)
	waitLine(t, out, `"topic":"three"`)
	if code, errs := wait(); code != 0 {
		t.Fatalf("exit %d %q", code, errs)
	}
	var topics []string
	for _, m := range outputLines(t, out.String()) {
		if raw, ok := m["notification"]; ok {
			var n struct{ Topic string }
			if err := json.Unmarshal(raw, &n); err != nil {
				t.Fatal(err)
			}
			topics = append(topics, n.Topic)
		}
	}
	if strings.Join(topics, ",") != "one,two,three" {
		t.Fatalf("notifications printed: %v; want one, two, three, each once:\n%s", topics, out.String())
	}
	ds := disconnectLines(t, out.String())
	if len(ds) == 0 || ds[0].Cause != "kicked" || ds[0].Attempt != 0 || ds[0].Code == "" || !ds[0].FromFrame {
		t.Fatalf("first client_disconnect = %+v; want kicked, attempt 0, with the gRPC code", ds)
	}
}

// TestConnectDisconnectLineDetails: the client_disconnect line names the
// newer session that superseded this one, and for a reconnect refused
// because of a ban: the reject code, the gRPC code, the attempt number
// and when the ban ends.
func TestConnectDisconnectLineDetails(t *testing.T) {
	h := startHub(t)

	out, wait := h.connectCmd("--user", "gil", "--device", "tablet")
	waitLine(t, out, `"welcome"`)
	newer, _ := h.hold("gil", "tablet")
	if code, errs := wait(); code != exitSuperseded {
		t.Fatalf("superseded: exit %d, stderr %q", code, errs)
	}
	if ds := disconnectLines(t, out.String()); len(ds) != 1 || ds[0].Cause != "superseded" || ds[0].SupersededBy != newer {
		t.Fatalf("client_disconnect = %+v; want superseded by %s", ds, newer)
	}

	out, wait = h.connectCmd("--user", "hana", "--device", "d", "--reconnect", "--for", "3s")
	waitLine(t, out, `"welcome"`)
	if code, _, errs := h.ctl("kick", "--user", "hana", "--reason", "move", "--reconnect-after", "300ms"); code != 0 {
		t.Fatal(errs)
	}
	waitLine(t, out, `"will_reconnect":true`)
	banned := time.Now()
	if code, _, errs := h.ctl("ban", "--user", "hana", "--for", "1h", "--reason", "cool off"); code != 0 {
		t.Fatal(errs)
	}
	waitLine(t, out, `"reject_code":"banned"`)
	if code, errs := wait(); code != 0 {
		t.Fatalf("exit %d %q", code, errs)
	}
	var refused *clientDisconnect
	for _, d := range disconnectLines(t, out.String()) {
		if d.RejectCode == "banned" {
			refused = &d
			break
		}
	}
	until, err := time.Parse(time.RFC3339Nano, refused.BannedUntil)
	if refused.Cause != "rejected" || refused.Attempt != 1 || refused.Code == "" || refused.Code == "OK" || err != nil ||
		until.Before(banned.Add(59*time.Minute)) || until.After(banned.Add(61*time.Minute)) {
		t.Fatalf("refused reconnect = %+v; want rejected (banned), attempt 1, a gRPC code, banned until about an hour from now", refused)
	}
}

// TestConnectRecoversFromSilentConnection: a connection that stops
// carrying anything without breaking (a stalled proxy) is noticed within
// three heartbeats, and connect --reconnect resumes over a new connection:
// the client dials its own, so it can replace a dead one.
func TestConnectRecoversFromSilentConnection(t *testing.T) {
	h := startHubWith(t, func(c *hub.Config) {
		c.HeartbeatInterval, c.GracefulTimeout = 100*time.Millisecond, 200*time.Millisecond
	})
	p := stallproxy.New(t, h.addr)
	out, wait := h.connectCmd("--addr", p.Addr(), "--user", "ivy", "--device", "d", "--reconnect", "--for", "4s")
	waitLine(t, out, `"welcome"`)
	p.Stall()
	waitLine(t, out, `nothing from the server`)
	waitLine(t, out, `"resumed_from"`)
	if code, _, errs := h.ctl("notify", "--user", "ivy", "--topic", "after-silence", "--payload", `{}`); code != 0 {
		t.Fatal(errs)
	}
	waitLine(t, out, `"topic":"after-silence"`)
	if code, errs := wait(); code != 0 {
		t.Fatalf("exit %d %q", code, errs)
	}
	ds := disconnectLines(t, out.String())
	if len(ds) == 0 || ds[0].Cause != "lost" || !ds[0].WillReconnect || ds[0].FromFrame {
		t.Fatalf("client_disconnect lines %+v; want the silent connection reported lost, reconnecting", ds)
	}
}

// TestConnectTLS: --tls with --ca reaches a hub served over TLS; a
// plaintext connect does not.
func TestConnectTLS(t *testing.T) {
	cert := testtls.SelfSigned(t)
	h := startHubWith(t, nil, cert.TLS)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, cert.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	out, wait := h.connectCmd("--tls", "--ca", ca, "--user", "tess", "--device", "d", "--for", "300ms")
	if code, errs := wait(); code != 0 || !strings.Contains(out.String(), `"welcome"`) {
		t.Fatalf("over TLS: exit %d, stderr %q, output %q", code, errs, out.String())
	}
	var o, e bytes.Buffer
	if code := run([]string{"connect", "--addr", h.addr, "--user", "tess", "--device", "d", "--timeout", "2s"}, &o, &e); code != exitFailure {
		t.Fatalf("plaintext to a TLS hub: exit %d %q; want %d", code, e.String(), exitFailure)
	}
	if code := run([]string{"connect", "--addr", h.addr, "--tls", "--ca", filepath.Join(t.TempDir(), "none.pem"), "--user", "tess"}, &o, &e); code != exitUsage {
		t.Fatalf("missing --ca file: exit %d; want %d", code, exitUsage)
	}
}
