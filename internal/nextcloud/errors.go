package nextcloud

import (
	"errors"
	"fmt"
)

// The outcomes of a check other than success. A caller that needs only
// the kind uses errors.Is with ErrRejected or ErrWrongUser; one that needs
// the detail (the uid a password opens, the HTTP status) uses errors.As
// with the types below.
//
// Only a rejection and a wrong user are the user's doing: the handler
// counts them against the rate limit, and an outage not. The sweep deletes
// a stored password on a rejection only, and reads its statuses to tell
// a definitive one (401, OCS 997) from the rest.
var (
	ErrRejected  = errors.New("nextcloud rejected the credentials")
	ErrWrongUser = errors.New("credentials belong to another user")
)

// RejectedError is Nextcloud refusing the credentials: HTTP 401 or 403,
// or an HTTP 200 whose OCS status is not a success (997: not logged in)
// or that names no user.
type RejectedError struct {
	// HTTPStatus is the answer's status: 401, 403, or 200 for a refusal
	// in the OCS body.
	HTTPStatus int
	// OCSStatus is the OCS status code of the body (997 for wrong
	// credentials), 0 when the body is not OCS JSON: a 401 of a proxy in
	// front of Nextcloud. The API refuses the request either way; the
	// sweep deletes only on 997.
	OCSStatus int
}

func (RejectedError) Error() string        { return ErrRejected.Error() }
func (RejectedError) Is(target error) bool { return target == ErrRejected }

// WrongUserError is a password that opens another account than the one
// asked for. UID is that account: the handler counts the attempt against
// it too.
type WrongUserError struct{ UID string }

func (WrongUserError) Error() string        { return ErrWrongUser.Error() }
func (WrongUserError) Is(target error) bool { return target == ErrWrongUser }

// StatusError is an HTTP status Nextcloud should not answer: a 5xx, a
// 429 of its brute-force throttle, a redirect.
type StatusError struct{ Code int }

func (e StatusError) Error() string { return fmt.Sprintf("nextcloud answered HTTP %d", e.Code) }

// BodyError is an answer that is not OCS JSON.
type BodyError struct{ Err error }

func (e BodyError) Error() string { return "nextcloud answer is not OCS JSON: " + e.Err.Error() }
func (e BodyError) Unwrap() error { return e.Err }

// TransportError is a failure to get any answer: DNS, TCP, TLS, timeout.
type TransportError struct{ Err error }

func (e TransportError) Error() string { return "nextcloud unreachable: " + e.Err.Error() }
func (e TransportError) Unwrap() error { return e.Err }
