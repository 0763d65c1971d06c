package flightsvc

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loaderd/loaderd/service"
)

// StatusOf maps err to the gRPC status the service answers with (SPEC §4):
// service.ErrInvalid → InvalidArgument, ErrNotFound → NotFound, ErrStale and
// ErrNoLocal → FailedPrecondition, ErrExhausted → ResourceExhausted, ErrUnavailable and
// ErrUnreadable → Unavailable, ErrDataLoss → DataLoss, context cancellation → Canceled or
// DeadlineExceeded. An error that already carries a gRPC status keeps it;
// anything else is Internal. The message is err's text. StatusOf(nil) is nil.
func StatusOf(err error) error {
	if err == nil {
		return nil
	}
	for _, m := range []struct {
		err  error
		code codes.Code
	}{
		{err: service.ErrInvalid, code: codes.InvalidArgument},
		{err: service.ErrNotFound, code: codes.NotFound},
		{err: service.ErrStale, code: codes.FailedPrecondition},
		{err: service.ErrNoLocal, code: codes.FailedPrecondition},
		{err: service.ErrExhausted, code: codes.ResourceExhausted},
		{err: service.ErrUnavailable, code: codes.Unavailable},
		{err: service.ErrUnreadable, code: codes.Unavailable},
		{err: service.ErrDataLoss, code: codes.DataLoss},
		{err: context.Canceled, code: codes.Canceled},
		{err: context.DeadlineExceeded, code: codes.DeadlineExceeded},
	} {
		if errors.Is(err, m.err) {
			return status.Error(m.code, err.Error())
		}
	}
	if st, ok := status.FromError(err); ok {
		return st.Err()
	}
	return status.Error(codes.Internal, err.Error())
}
