package query

import "context"

type partialResponseKey struct{}

// WithPartialResponse records a request's partial-response choice in ctx. The HTTP API sets it
// from the partial_response parameter; the fan-out reads it with PartialResponse.
func WithPartialResponse(ctx context.Context, enabled bool) context.Context {
	return context.WithValue(ctx, partialResponseKey{}, enabled)
}

// PartialResponse tells whether a request may be answered without some stores: the choice
// recorded in ctx, or def (the --query.partial-response flag) when the request made none.
func PartialResponse(ctx context.Context, def bool) bool {
	if v, ok := ctx.Value(partialResponseKey{}).(bool); ok {
		return v
	}
	return def
}
