package checkpoint

import "errors"

var (
	// ErrMalformed is returned for bytes that are not a signed checkpoint
	// (a note whose text is origin, size and root lines), or a key that is
	// not a note key.
	ErrMalformed = errors.New("malformed checkpoint")

	// ErrSignature is returned by Open when the checkpoint carries no valid
	// signature of the verifier key given: it was signed by another key,
	// or its text was changed after it was signed.
	ErrSignature = errors.New("checkpoint signature does not verify")
)
