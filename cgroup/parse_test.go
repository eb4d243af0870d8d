package cgroup

import (
	"os"
	"strings"
	"testing"
)

func TestParseProcCgroup(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		path     string
		v1       int
		err      string
	}{
		{name: "pure v2", in: "0::/system.slice/t3-supervise@alice.service\n", path: "/system.slice/t3-supervise@alice.service"},
		{name: "root", in: "0::/\n", path: "/"},
		{name: "path with colon", in: "0::/a:b/c\n", path: "/a:b/c"},
		{name: "hybrid", in: "4:memory:/x\n1:name=systemd:/y\n0::/y\n", path: "/y", v1: 2},
		{name: "v1 only", in: "4:memory:/x\n", err: "no cgroup v2"},
		{name: "deleted", in: "0::/a (deleted)\n", err: "removed"},
		{name: "two unified lines", in: "0::/a\n0::/b\n", err: "second"},
		{name: "garbage", in: "hello\n", err: "want ID"},
		{name: "bad id", in: "x::/a\n", err: "bad hierarchy"},
		{name: "relative path", in: "0::a\n", err: "not absolute"},
		{name: "controllers on unified", in: "0:memory:/a\n", err: "no controllers"},
		{name: "empty", in: "", err: "no cgroup v2"},
	} {
		sc, err := ParseProcCgroup(strings.NewReader(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err = %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || sc.Path != tc.path || len(sc.V1) != tc.v1 {
			t.Errorf("%s: %+v, %v; want path %q with %d v1 hierarchies", tc.name, sc, err, tc.path, tc.v1)
		}
	}
}

// Real kernel output, as files: a hybrid host (this project's CI host), a pure v2 unit, v1 only.
func TestParseProcCgroupSamples(t *testing.T) {
	for file, want := range map[string]struct {
		v1  bool
		err bool
	}{
		"proc-self-cgroup.hybrid": {v1: true},
		"proc-self-cgroup.v2":     {},
		"proc-self-cgroup.v1":     {err: true},
	} {
		f, err := os.Open("testdata/" + file)
		if err != nil {
			t.Fatal(err)
		}
		sc, err := ParseProcCgroup(f)
		f.Close()
		if (err != nil) != want.err || (len(sc.V1) > 0) != want.v1 {
			t.Errorf("%s: %+v, %v", file, sc, err)
		}
	}
}

func TestParseMemoryEvents(t *testing.T) {
	f, err := os.Open("testdata/memory.events")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ev, err := ParseMemoryEvents(f)
	if err != nil {
		t.Fatal(err)
	}
	if ev != (MemoryEvents{High: 1843, Max: 27, OOM: 3, OOMKill: 3}) {
		t.Errorf("%+v", ev)
	}
	ev, err = ParseMemoryEvents(strings.NewReader("oom_kill 1\nsock_throttled 5\n\n"))
	if err != nil || ev.OOMKill != 1 {
		t.Errorf("unknown keys must be ignored: %+v %v", ev, err)
	}
	for _, bad := range []string{"oom_kill\n", "oom_kill x\n", "oom_kill 1 2\n", "oom_kill -1\n"} {
		if _, err := ParseMemoryEvents(strings.NewReader(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParsePressure(t *testing.T) {
	some, full, err := ParsePressure(strings.NewReader(
		"some avg10=12.50 avg60=3.00 avg300=0.71 total=9876543\nfull avg10=1.00 avg60=0.10 avg300=0.00 total=12345\n"))
	if err != nil {
		t.Fatal(err)
	}
	if some.Avg10 != 12.5 || some.Total != 9876543 || full.Total != 12345 || full.Avg60 != 0.1 {
		t.Errorf("some %+v full %+v", some, full)
	}
	f, err := os.Open("testdata/memory.pressure.host")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, _, err := ParsePressure(f); err != nil {
		t.Errorf("real sample: %v", err)
	}
	for _, bad := range []string{"some avg10\n", "other avg10=1\n", "some total=x\n"} {
		if _, _, err := ParsePressure(strings.NewReader(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseProcCgroup(f *testing.F) {
	for _, s := range []string{"0::/a\n", "4:memory:/x\n0::/y\n", "", "0:::\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		sc, err := ParseProcCgroup(strings.NewReader(in))
		if err == nil && !strings.HasPrefix(sc.Path, "/") {
			t.Fatalf("accepted a relative path %q from %q", sc.Path, in)
		}
	})
}

func FuzzParseMemoryEvents(f *testing.F) {
	f.Add("low 0\nhigh 1\nmax 2\noom 3\noom_kill 4\n")
	f.Fuzz(func(t *testing.T, in string) { _, _ = ParseMemoryEvents(strings.NewReader(in)) })
}

func FuzzParsePressure(f *testing.F) {
	f.Add("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
	f.Fuzz(func(t *testing.T, in string) { _, _, _ = ParsePressure(strings.NewReader(in)) })
}
