package cgroup

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Size is a memory size as the cgroup files take it: a byte count or "max". The zero Size is
// unset: its file is not written.
type Size struct {
	bytes int64
	max   bool
	set   bool
}

// Bytes returns a set Size of n bytes.
func Bytes(n int64) Size { return Size{bytes: n, set: true} }

// Max is the Size "max": no limit.
var Max = Size{max: true, set: true}

var units = map[string]int64{"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

// ParseSize reads "12G", "512M", "1.5G", "4096", "max" (also "infinity", as systemd spells it).
// Suffixes are binary (K = 1024) as in systemd.resource-control(5); "B", "iB" after them are
// accepted. A negative, empty or overflowing value is an error.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	switch strings.ToLower(t) {
	case "max", "infinity":
		return Max, nil
	case "":
		return Size{}, fmt.Errorf("empty size")
	}
	u := strings.ToUpper(t)
	u = strings.TrimSuffix(u, "B")
	u = strings.TrimSuffix(u, "I")
	num, unit := u, ""
	if n := len(u); n > 0 && (u[n-1] < '0' || u[n-1] > '9') {
		num, unit = u[:n-1], u[n-1:]
	}
	mult, ok := units[unit]
	if !ok || num == "" {
		return Size{}, fmt.Errorf("size %q: want bytes, a number with K, M, G or T, or max", s)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) || strings.ContainsAny(num, "eE+-xXpP_") {
		return Size{}, fmt.Errorf("size %q: want bytes, a number with K, M, G or T, or max", s)
	}
	b := f * float64(mult)
	if b >= math.MaxInt64 {
		return Size{}, fmt.Errorf("size %q is too large", s)
	}
	return Bytes(int64(b)), nil
}

// IsSet reports whether the Size was given.
func (s Size) IsSet() bool { return s.set }

// IsMax reports whether the Size is "max".
func (s Size) IsMax() bool { return s.max }

// N is the byte count of a set, finite Size; math.MaxInt64 for "max".
func (s Size) N() int64 {
	if s.max {
		return math.MaxInt64
	}
	return s.bytes
}

// FileValue is the value written to a cgroup file: "max" or the decimal byte count.
func (s Size) FileValue() string {
	switch {
	case !s.set:
		return ""
	case s.max:
		return "max"
	}
	return strconv.FormatInt(s.bytes, 10)
}

// String is the value as an operator writes it: "12G", "512M", "max" (pflag shows it as the
// default in --help).
func (s Size) String() string {
	if !s.set || s.max {
		return s.FileValue()
	}
	for _, u := range []string{"T", "G", "M", "K"} {
		if m := units[u]; s.bytes >= m && s.bytes%m == 0 {
			return strconv.FormatInt(s.bytes/m, 10) + u
		}
	}
	return s.FileValue()
}

// Set implements pflag.Value, so sizes are flags directly.
func (s *Size) Set(v string) error {
	p, err := ParseSize(v)
	if err != nil {
		return err
	}
	*s = p
	return nil
}

// Type implements pflag.Value.
func (s *Size) Type() string { return "size" }
