package supervise

import "testing"

func TestDecideRestart(t *testing.T) {
	for _, tc := range []struct {
		in   RestartInput
		want RestartDecision
	}{
		{RestartInput{Policy: RestartNever}, RestartNo},
		{RestartInput{Policy: RestartNever, Changed: true}, RestartNo},
		{RestartInput{Policy: RestartNever, Changed: true, Idle: true}, RestartNo},
		{RestartInput{Policy: RestartWhenIdle}, RestartNo},
		{RestartInput{Policy: RestartWhenIdle, Idle: true}, RestartNo}, // idle, but nothing to take up
		{RestartInput{Policy: RestartWhenIdle, Changed: true}, RestartWait},
		{RestartInput{Policy: RestartWhenIdle, Changed: true, Idle: true}, RestartNow},
		{RestartInput{Policy: RestartAlways}, RestartNo},
		{RestartInput{Policy: RestartAlways, Changed: true}, RestartNow}, // busy agents or not
		{RestartInput{Policy: RestartAlways, Changed: true, Idle: true}, RestartNow},
		{RestartInput{Policy: RestartPolicy(7), Changed: true, Idle: true}, RestartNo}, // no policy: no restart
	} {
		if got := DecideRestart(tc.in); got != tc.want {
			t.Errorf("DecideRestart(%+v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestRestartPolicyNames(t *testing.T) {
	for _, p := range []RestartPolicy{RestartNever, RestartWhenIdle, RestartAlways} {
		got, err := ParseRestartPolicy(p.String())
		if err != nil || got != p {
			t.Errorf("ParseRestartPolicy(%q) = %v, %v; want %v", p.String(), got, err, p)
		}
	}
	for _, s := range []string{"", "sometimes", "Always", "when_idle", " never"} {
		if p, err := ParseRestartPolicy(s); err == nil {
			t.Errorf("ParseRestartPolicy(%q) = %v, want an error", s, p)
		}
	}
	if got, want := RestartPolicy(7).String(), "RestartPolicy(7)"; got != want {
		t.Errorf("String of an unknown policy: %q, want %q", got, want)
	}
}
