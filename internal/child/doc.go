// Package child starts, signals and reaps the processes the bridge runs:
// the pooled transforms and the one-shot programs. It is the one place that
// forks (Start): three pipes, a process group of the child's own, the
// parent-death signal on an OS thread locked until the reap, credentials,
// environment and working directory. While the child runs, its stderr is
// drained into the log (rate limited, lines kept in a tail for error
// messages); Stop and Kill end its group with a grace between SIGTERM and
// SIGKILL; the reap sweeps what is left of the group and closes Done.
//
// The caller owns what flows over stdin and stdout; the package knows
// nothing of protocols, pools or requests.
package child
