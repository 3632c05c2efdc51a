package filter

// Pid is the process that produced this reply, for the caller's access
// log: the transform's pid belongs on the line of a request that succeeded
// too, not only in *Error. Read it before closing the body; the number
// stays valid afterwards but the process may have been replaced.
func (x *exchange) Pid() int { return x.proc.Pid() }

// Pid is the one-shot program's pid (its process group leader).
func (r *oneShotRun) Pid() int { return r.pid }
