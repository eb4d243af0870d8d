package cgroup

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// The trigger for a pressure window: the kernel takes 500 ms to 10 s, an unprivileged writer
// only multiples of 2 s (psi.go); the threshold keeps the stall share.
func TestPSITriggerSpecs(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	for _, tc := range []struct {
		window time.Duration
		share  float64
		want   []PSITriggerSpec
		reason string // a part of it; "" for none
	}{
		{10 * time.Second, 0.25, []PSITriggerSpec{{ms(2500), ms(10000)}}, ""},
		{4 * time.Second, 0.5, []PSITriggerSpec{{ms(2000), ms(4000)}}, ""},
		// Privileged first, then the unprivileged window below it.
		{3 * time.Second, 0.25, []PSITriggerSpec{{ms(750), ms(3000)}, {ms(500), ms(2000)}}, ""},
		{ms(9500), 0.5, []PSITriggerSpec{{ms(4750), ms(9500)}, {ms(4000), ms(8000)}}, ""},
		// Longer than the kernel's longest window: cut to 10 s.
		{30 * time.Second, 0.25, []PSITriggerSpec{{ms(2500), ms(10000)}}, ""},
		// Too short for an unprivileged writer: only the privileged one, and the reason.
		{time.Second, 0.25, []PSITriggerSpec{{ms(250), ms(1000)}}, "2 s an unprivileged"},
		{ms(500), 0.25, []PSITriggerSpec{{ms(125), ms(500)}}, "2 s an unprivileged"},
		// Too short for any trigger.
		{ms(300), 0.25, nil, "500 ms"},
		{0, 0.25, nil, "--pressure-window 0"},
		// A threshold of 0 is EINVAL: any stall at all is 1 µs; a share of 1 is the window.
		{10 * time.Second, 0, []PSITriggerSpec{{time.Microsecond, ms(10000)}}, ""},
		{10 * time.Second, 1, []PSITriggerSpec{{ms(10000), ms(10000)}}, ""},
	} {
		got, reason := PSITriggerSpecs(tc.window, tc.share)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("PSITriggerSpecs(%v, %v) = %v, want %v", tc.window, tc.share, got, tc.want)
		}
		if (tc.reason == "") != (reason == "") || !strings.Contains(reason, tc.reason) {
			t.Errorf("PSITriggerSpecs(%v, %v): reason %q, want one with %q", tc.window, tc.share, reason, tc.reason)
		}
	}
	if s := (PSITriggerSpec{Stall: ms(2500), Window: ms(10000)}).String(); s != "some 2500000 10000000" {
		t.Errorf("the trigger line is %q, want psi.rst's form", s)
	}
}
