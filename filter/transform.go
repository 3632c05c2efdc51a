package filter

import (
	"context"
	"strings"
)

// Transform rewrites a message. Apply consumes in (and closes in.Body, also
// on error) and returns the transformed message whose Body streams.
// Closing out.Body ends the exchange (releasing or replacing the process).
//
// Errors are *Error. An error from Apply means no output began; an error
// from a Read of out.Body means the output broke after it began.
type Transform interface {
	Name() string
	Apply(ctx context.Context, in *Message, req *RequestInfo) (*Message, error)
}

// Chain is a Transform whose stages stream into each other: stage N's output
// body is stage N+1's input body, read by stage N+1's writer while stage N
// still produces it, so no stage buffers the whole body. An empty Chain
// returns its input.
type Chain []Transform

// Name joins the stage names with "|".
func (c Chain) Name() string {
	names := make([]string, len(c))
	for i, t := range c {
		names[i] = t.Name()
	}
	return strings.Join(names, "|")
}

// Apply starts every stage in turn. When a stage fails before output, it
// has closed its input, which ends the stages before it; its error is
// returned. A stage whose input breaks (an earlier stage failing after its
// output began) reports the earlier stage's *Error.
func (c Chain) Apply(ctx context.Context, in *Message, req *RequestInfo) (*Message, error) {
	msg := in
	for _, t := range c {
		out, err := t.Apply(ctx, msg, req)
		if err != nil {
			return nil, err
		}
		msg = out
	}
	return msg, nil
}
