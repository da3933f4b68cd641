package hubapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Notification payloads are bytes; every tool shows them one way
// (docs/events.md, "Payloads"):
//   - in JSON output, a payload that is JSON is the value itself under
//     "payload" (compacted onto one line), and any other payload is base64
//     under "payload_base64";
//   - in text (timelines, tables), the compact JSON, cut after
//     PayloadTextMax bytes, or "N bytes, not JSON".

// PayloadTextMax is how much of a JSON payload a sentence shows.
const PayloadTextMax = 120

// PayloadJSON returns p compacted onto one line when it is JSON (ok), so
// that it can be embedded as a value in a JSON line.
func PayloadJSON(p []byte) (compact []byte, ok bool) {
	if len(p) == 0 || !json.Valid(p) {
		return nil, false
	}
	var b bytes.Buffer
	if err := json.Compact(&b, p); err != nil {
		return nil, false
	}
	return b.Bytes(), true
}

// PayloadText is a payload as a sentence shows it: its compact JSON, cut
// after PayloadTextMax bytes (on a character boundary) with the size
// added, or its size when it is not JSON.
func PayloadText(p []byte) string {
	if len(p) == 0 {
		return "no payload"
	}
	c, ok := PayloadJSON(p)
	if !ok {
		return fmt.Sprintf("%d bytes, not JSON", len(p))
	}
	if len(c) <= PayloadTextMax {
		return "payload " + string(c)
	}
	cut := PayloadTextMax
	for cut > 0 && !utf8.RuneStart(c[cut]) {
		cut--
	}
	return fmt.Sprintf("payload %s… (%d bytes)", c[:cut], len(p))
}
