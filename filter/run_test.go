package filter

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// OnFailure is the one rule for retrying and failing open, for Run and for
// callers that replay their input themselves.
func TestPolicyOnFailure(t *testing.T) {
	both := Policy{Retry: true, FailOpen: true}
	for _, tt := range []struct {
		name    string
		p       Policy
		kind    Kind
		attempt int
		whole   bool
		want    Action
	}{
		{"crash first attempt retries", both, Crash, 1, true, ActionRetry},
		{"protocol first attempt retries", both, Protocol, 1, true, ActionRetry},
		{"crash second attempt fails open", both, Crash, 2, true, ActionFailOpen},
		{"timeout is not retried", both, Timeout, 1, true, ActionFailOpen},
		{"input no longer whole", both, Crash, 1, false, ActionFailClosed},
		{"bad request never fails open", both, BadRequest, 1, true, ActionFailClosed},
		{"canceled never fails open", both, Canceled, 1, true, ActionFailClosed},
		{"broken input never fails open", both, Input, 1, true, ActionFailClosed},
		{"retry only", Policy{Retry: true}, Crash, 2, true, ActionFailClosed},
		{"fail open only", Policy{FailOpen: true}, Saturated, 1, true, ActionFailOpen},
		{"neither", Policy{}, Crash, 1, true, ActionFailClosed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.p.OnFailure(tt.kind, tt.attempt, tt.whole)
			require.Equal(t, tt.want, got, "%v, want %v", got, tt.want)
		})
	}
	require.Equal(t, "fail closed", ActionFailClosed.String())
	require.Equal(t, "retry", ActionRetry.String())
	require.Equal(t, "fail open", ActionFailOpen.String())
}
