package supervise

import "fmt"

// RestartPolicy says when t3 is restarted for a change it takes up only when it starts: a token
// rotated (or gone) in Vault, which the child's environment carries (--restart-on-rotation).
// Restarting t3 ends every live agent session with it, hence RestartNever by default. The policy
// is the child's lifecycle, so it lives here; the restart itself is the supervisor's exit for
// systemd to carry out (Restart=), and whether the agents are idle is cgroup's judgement
// (cgroup.IdleGate), which reaches Decide as one bool.
type RestartPolicy int

const (
	// RestartNever: t3 keeps the old token until it restarts for another reason.
	RestartNever RestartPolicy = iota
	// RestartWhenIdle: once the agents have been idle long enough.
	RestartWhenIdle
	// RestartAlways: at once, busy agents or not.
	RestartAlways
)

var restartPolicyNames = [...]string{RestartNever: "never", RestartWhenIdle: "when-idle", RestartAlways: "always"}

// String is the policy's name on the command line.
func (p RestartPolicy) String() string {
	if p < 0 || int(p) >= len(restartPolicyNames) {
		return fmt.Sprintf("RestartPolicy(%d)", int(p))
	}
	return restartPolicyNames[p]
}

// ParseRestartPolicy reads a policy's name: never, when-idle or always.
func ParseRestartPolicy(s string) (RestartPolicy, error) {
	for p, name := range restartPolicyNames {
		if s == name {
			return RestartPolicy(p), nil
		}
	}
	return RestartNever, fmt.Errorf("%q: want never, when-idle or always", s)
}

// RestartInput is what the restart decision rests on, read at one moment.
type RestartInput struct {
	Policy RestartPolicy
	// Changed: a change waits that t3 takes up only by restarting.
	Changed bool
	// Idle: the agents have been idle long enough (cgroup.IdleGate); only RestartWhenIdle reads it.
	Idle bool
}

// RestartDecision is what to do about t3 at that moment.
type RestartDecision int

const (
	RestartNo   RestartDecision = iota // nothing waits, or the policy never restarts
	RestartWait                        // a change waits for the agents to be idle
	RestartNow                         // stop t3 so that it starts again with the change
)

func (d RestartDecision) String() string {
	return [...]string{"no", "wait", "now"}[d]
}

// DecideRestart is the restart policy, a pure function of its input.
func DecideRestart(in RestartInput) RestartDecision {
	switch {
	case !in.Changed:
		return RestartNo
	case in.Policy == RestartAlways:
		return RestartNow
	case in.Policy == RestartWhenIdle && in.Idle:
		return RestartNow
	case in.Policy == RestartWhenIdle:
		return RestartWait
	}
	return RestartNo
}
