package cgroup

import "testing"

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in        string
		file, hum string
	}{
		{"12G", "12884901888", "12G"},
		{"512M", "536870912", "512M"},
		{"512MiB", "536870912", "512M"},
		{"1.5G", "1610612736", "1536M"},
		{"4096", "4096", "4K"},
		{"1000", "1000", "1000"},
		{"16g", "17179869184", "16G"},
		{"max", "max", "max"},
		{"infinity", "max", "max"},
		{" 2T ", "2199023255552", "2T"},
		{"0", "0", "0"},
	} {
		s, err := ParseSize(tc.in)
		if err != nil {
			t.Errorf("ParseSize(%q): %v", tc.in, err)
			continue
		}
		if s.FileValue() != tc.file || s.String() != tc.hum {
			t.Errorf("ParseSize(%q) = %s / %s, want %s / %s", tc.in, s.FileValue(), s, tc.file, tc.hum)
		}
	}
	for _, bad := range []string{"", "-1", "-1G", "12X", "G", "1e9", "0x10", "NaN", "Inf", "1_000", "99999999999T", "12 G", "1.2.3M", "+5"} {
		if s, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) = %v, want an error", bad, s)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"12G", "max", "1.5M", "4096", "-1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSize(in)
		if err != nil {
			return
		}
		// Whatever parses must round-trip through the form the kernel reads.
		back, err := ParseSize(s.FileValue())
		if err != nil || back != s {
			t.Fatalf("ParseSize(%q) = %v; its file value %q parses to %v, %v", in, s, s.FileValue(), back, err)
		}
		if !s.IsMax() && s.N() < 0 {
			t.Fatalf("ParseSize(%q) negative: %d", in, s.N())
		}
	})
}
