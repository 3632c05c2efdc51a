package conf

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a time span written as a string ("30s", "1m30s", "250ms").
// A bare integer is refused instead of being read as nanoseconds, because
// `timeout = 30` silently meaning 30ns is a trap nobody wants.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// UnmarshalTOML accepts only strings in time.ParseDuration syntax.
func (d *Duration) UnmarshalTOML(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("a duration is a string such as \"30s\" or \"500ms\", not %v", v)
	}
	return d.UnmarshalText([]byte(s))
}

// UnmarshalText parses "30s" and friends; negative spans are refused.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("invalid duration %q (write e.g. \"30s\", \"500ms\", \"2m\")", b)
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as time.Duration prints it, without
// the zero units it appends ("5m" rather than "5m0s"); UnmarshalText reads
// it back exactly.
func (d Duration) MarshalText() ([]byte, error) {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return []byte(s), nil
}

// Size is a byte count, written as an integer (bytes) or as a string with a
// binary unit: "512KiB", "64MiB", "1GiB" (also "k", "KB", "M", "MB", "G",
// "GB", all meaning powers of 1024, the way memory limits are usually meant).
type Size int64

// UnmarshalTOML accepts a non-negative integer or a string with a unit.
func (s *Size) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return fmt.Errorf("size %d is negative", x)
		}
		*s = Size(x)
		return nil
	case string:
		return s.UnmarshalText([]byte(x))
	}
	return fmt.Errorf("a size is an integer (bytes) or a string such as \"64MiB\", not %v", v)
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	// Longest suffixes first so "KiB" is not read as "B".
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30},
	{"B", 1},
}

// UnmarshalText parses "1048576", "1MiB", "512 KiB".
func (s *Size) UnmarshalText(b []byte) error {
	str := strings.TrimSpace(string(b))
	mult := int64(1)
	for _, u := range sizeUnits {
		if len(str) > len(u.suffix) && strings.EqualFold(str[len(str)-len(u.suffix):], u.suffix) {
			mult = u.mult
			str = strings.TrimSpace(str[:len(str)-len(u.suffix)])
			break
		}
	}
	n, err := strconv.ParseInt(str, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("invalid size %q (write e.g. 65536, \"64KiB\", \"512MiB\")", b)
	}
	*s = Size(n * mult)
	return nil
}

// MarshalText prints the largest exact binary unit, so round trips are exact.
func (s Size) MarshalText() ([]byte, error) {
	n := int64(s)
	switch {
	case n == 0:
		return []byte("0"), nil
	case n%(1<<30) == 0:
		return []byte(strconv.FormatInt(n>>30, 10) + "GiB"), nil
	case n%(1<<20) == 0:
		return []byte(strconv.FormatInt(n>>20, 10) + "MiB"), nil
	case n%(1<<10) == 0:
		return []byte(strconv.FormatInt(n>>10, 10) + "KiB"), nil
	}
	return []byte(strconv.FormatInt(n, 10) + "B"), nil
}
