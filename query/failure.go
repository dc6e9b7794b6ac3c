package query

import (
	"errors"
	"strings"
	"time"
	"unicode"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Reasons of a store's last failure, the reason label of
// meridian_query_store_last_error_timestamp_seconds: a short, bounded vocabulary that a
// dashboard can show and an alert can match, where the error's text (on /api/v1/stores) is
// neither bounded nor stable. Other gRPC codes are named in snake case ("resource_exhausted").
const (
	reasonTimeout           = "timeout"            // the store did not answer within its timeout
	reasonConnectionRefused = "connection_refused" // nothing listens at the address
	reasonDNS               = "dns"                // the name does not resolve, or discovery failed
	reasonTLS               = "tls"                // handshake or certificate failure
	reasonUnavailable       = "unavailable"        // any other transport failure
	reasonNotAStore         = "not_a_store"        // Info answered without the StoreAPI
	reasonDial              = "dial"               // the dial options are unusable for the address
	reasonError             = "error"              // an error that is not a gRPC status
)

// errNotAStore is the probe's failure for an endpoint whose Info does not announce the StoreAPI.
var errNotAStore = errors.New("endpoint does not serve the StoreAPI")

// failureReason classifies a failed call to a store; timedOut tells that the call's own
// deadline expired (the store's fault, whatever gRPC made of it).
func failureReason(err error, timedOut bool) string {
	if timedOut {
		return reasonTimeout
	}
	if errors.Is(err, errNotAStore) {
		return reasonNotAStore
	}
	st, ok := status.FromError(err)
	if !ok {
		return reasonError
	}
	switch st.Code() {
	case codes.DeadlineExceeded:
		return reasonTimeout
	case codes.Unavailable:
		return unavailableReason(st.Message())
	default:
		return snakeCase(st.Code().String())
	}
}

// unavailableReason tells apart, from gRPC's message, the transport failures an operator fixes
// differently: the process is down, the name is wrong, the certificates do not match.
func unavailableReason(msg string) string {
	msg = strings.ToLower(msg)
	switch {
	case strings.Contains(msg, "connection refused"):
		return reasonConnectionRefused
	case strings.Contains(msg, "no such host"), strings.Contains(msg, "produced zero addresses"),
		strings.Contains(msg, "name resolver"), strings.Contains(msg, "lookup "):
		return reasonDNS
	case strings.Contains(msg, "tls:"), strings.Contains(msg, "x509"), strings.Contains(msg, "certificate"),
		strings.Contains(msg, "authentication handshake failed"):
		return reasonTLS
	default:
		return reasonUnavailable
	}
}

// snakeCase turns a gRPC code's name ("ResourceExhausted") into a label value
// ("resource_exhausted").
func snakeCase(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// noteFailure records the reason and time of the store's latest failure, of a probe or of any
// call. Unlike LastError they stay after the store recovers: "when did it last fail, and why"
// is what on-call asks of a store that is healthy again.
func (r *storeRef) noteFailure(reason string) {
	r.mu.Lock()
	r.status.LastFailureReason = reason
	r.status.LastFailureTime = time.Now()
	r.mu.Unlock()
}

// noteCallFailure records a failed probe or call: a store that cannot be dialled keeps the
// reason it got when it was added (dns or dial), whatever error its calls report.
func (r *storeRef) noteCallFailure(err error, timedOut bool) {
	reason := failureReason(err, timedOut)
	if r.dialErr != nil {
		reason = r.statusCopy().LastFailureReason
	}
	r.noteFailure(reason)
}
