package metrics

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// ParseText reads the Prometheus text exposition format 0.0.4 strictly and
// returns every sample by its series, written as name{label="value",...}
// with the labels sorted. It refuses what Prometheus would refuse or
// misread: a malformed line, name, label or value; a TYPE after the
// family's samples or twice; a family whose samples are split by another;
// a repeated series; a histogram whose buckets are not cumulative, lack
// le="+Inf" or disagree with _count; a negative counter. The tests check
// WritePrometheus with it, and with promtool where it is installed.
func ParseText(text string) (map[string]float64, error) {
	if text != "" && !strings.HasSuffix(text, "\n") {
		return nil, fmt.Errorf("the last line has no line feed")
	}
	p := &textParser{
		types:   map[string]string{},
		helps:   map[string]bool{},
		done:    map[string]bool{},
		samples: map[string]float64{},
	}
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if err := p.line(line); err != nil {
			return nil, fmt.Errorf("line %d %q: %w", i+1, line, err)
		}
	}
	if err := p.endFamily(); err != nil {
		return nil, err
	}
	return p.samples, nil
}

var (
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

type textParser struct {
	types   map[string]string // family -> type
	helps   map[string]bool
	done    map[string]bool // families whose samples have ended
	current string          // family of the samples being read
	samples map[string]float64

	// the current histogram's series, by the labels other than le
	buckets map[string][]bucketSample
	counts  map[string]float64
}

type bucketSample struct {
	le    float64
	count float64
}

func (p *textParser) line(line string) error {
	if line == "" {
		return nil
	}
	if strings.HasPrefix(line, "#") {
		fields := strings.SplitN(line, " ", 4)
		if len(fields) < 3 || (fields[1] != "HELP" && fields[1] != "TYPE") {
			return nil // a plain comment
		}
		name := fields[2]
		if !metricNameRE.MatchString(name) {
			return fmt.Errorf("bad metric name %q", name)
		}
		rest := ""
		if len(fields) == 4 {
			rest = fields[3]
		}
		if fields[1] == "HELP" {
			if p.helps[name] {
				return fmt.Errorf("second HELP for %s", name)
			}
			if err := checkEscapes(rest, false); err != nil {
				return err
			}
			p.helps[name] = true
			return nil
		}
		switch rest {
		case "counter", "gauge", "histogram", "summary", "untyped":
		default:
			return fmt.Errorf("unknown type %q", rest)
		}
		if _, ok := p.types[name]; ok {
			return fmt.Errorf("second TYPE for %s", name)
		}
		if p.done[name] || p.current == name {
			return fmt.Errorf("TYPE for %s after its samples", name)
		}
		p.types[name] = rest
		return nil
	}
	return p.sample(line)
}

func (p *textParser) sample(line string) error {
	name, rest := line, ""
	if i := strings.IndexAny(line, "{ "); i >= 0 {
		name, rest = line[:i], line[i:]
	}
	if !metricNameRE.MatchString(name) {
		return fmt.Errorf("bad metric name %q", name)
	}
	ls := map[string]string{}
	if strings.HasPrefix(rest, "{") {
		var err error
		if ls, rest, err = parseLabels(rest[1:]); err != nil {
			return err
		}
	}
	if !strings.HasPrefix(rest, " ") {
		return fmt.Errorf("no value")
	}
	fields := strings.Split(rest[1:], " ")
	if len(fields) > 2 || fields[0] == "" {
		return fmt.Errorf("want a value and an optional timestamp")
	}
	v, err := parseValue(fields[0])
	if err != nil {
		return err
	}
	if len(fields) == 2 {
		if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
			return fmt.Errorf("bad timestamp %q", fields[1])
		}
	}

	family, series := name, ""
	typ := p.types[name]
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && p.types[base] == "histogram" {
			family, series, typ = base, suffix, "histogram"
		}
	}
	if family != p.current {
		if err := p.endFamily(); err != nil {
			return err
		}
		if p.done[family] {
			return fmt.Errorf("samples of %s split by another family", family)
		}
		p.current = family
	}
	key := seriesKey(name, ls)
	if _, dup := p.samples[key]; dup {
		return fmt.Errorf("series %s repeated", key)
	}
	p.samples[key] = v

	switch typ {
	case "counter":
		if v < 0 || math.IsNaN(v) {
			return fmt.Errorf("counter %s is %v", key, v)
		}
	case "histogram":
		if series == "" {
			return fmt.Errorf("histogram %s: a sample is _bucket, _sum or _count", name)
		}
		le, hasLE := ls["le"]
		delete(ls, "le")
		group := seriesKey(family, ls)
		if p.buckets == nil {
			p.buckets, p.counts = map[string][]bucketSample{}, map[string]float64{}
		}
		switch series {
		case "_bucket":
			if !hasLE {
				return fmt.Errorf("bucket without le")
			}
			bound, err := parseValue(le)
			if err != nil {
				return fmt.Errorf("le: %w", err)
			}
			p.buckets[group] = append(p.buckets[group], bucketSample{bound, v})
		case "_count":
			p.counts[group] = v
		}
	}
	return nil
}

// endFamily checks the histogram just read, if it was one.
func (p *textParser) endFamily() error {
	if p.current == "" {
		return nil
	}
	p.done[p.current] = true
	defer func() { p.buckets, p.counts, p.current = nil, nil, "" }()
	if p.types[p.current] != "histogram" {
		return nil
	}
	for group, bs := range p.buckets {
		if !sort.SliceIsSorted(bs, func(i, j int) bool { return bs[i].le < bs[j].le }) {
			return fmt.Errorf("histogram %s: buckets out of order", group)
		}
		for i := 1; i < len(bs); i++ {
			if bs[i].count < bs[i-1].count {
				return fmt.Errorf("histogram %s: bucket le=%v holds fewer than the one before", group, bs[i].le)
			}
		}
		last := bs[len(bs)-1]
		if !math.IsInf(last.le, 1) {
			return fmt.Errorf("histogram %s: no le=\"+Inf\" bucket", group)
		}
		count, ok := p.counts[group]
		if !ok || count != last.count {
			return fmt.Errorf("histogram %s: _count %v, +Inf bucket %v", group, count, last.count)
		}
	}
	return nil
}

func parseLabels(s string) (map[string]string, string, error) {
	ls := map[string]string{}
	for {
		if strings.HasPrefix(s, "}") {
			return ls, s[1:], nil
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return nil, "", fmt.Errorf("label without =")
		}
		name := s[:eq]
		if !labelNameRE.MatchString(name) || strings.HasPrefix(name, "__") {
			return nil, "", fmt.Errorf("bad label name %q", name)
		}
		if _, dup := ls[name]; dup {
			return nil, "", fmt.Errorf("label %s twice", name)
		}
		s = s[eq+1:]
		if !strings.HasPrefix(s, `"`) {
			return nil, "", fmt.Errorf("label %s: value not quoted", name)
		}
		var b strings.Builder
		i := 1
		for ; ; i++ {
			if i >= len(s) {
				return nil, "", fmt.Errorf("label %s: unterminated value", name)
			}
			c := s[i]
			if c == '"' {
				break
			}
			if c == '\n' {
				return nil, "", fmt.Errorf("label %s: raw line feed", name)
			}
			if c == '\\' {
				i++
				if i >= len(s) {
					return nil, "", fmt.Errorf("label %s: unterminated escape", name)
				}
				switch s[i] {
				case '\\', '"':
					b.WriteByte(s[i])
				case 'n':
					b.WriteByte('\n')
				default:
					return nil, "", fmt.Errorf("label %s: bad escape \\%c", name, s[i])
				}
				continue
			}
			b.WriteByte(c)
		}
		ls[name] = b.String()
		s = s[i+1:]
		switch {
		case strings.HasPrefix(s, ","):
			s = s[1:]
		case strings.HasPrefix(s, "}"):
		default:
			return nil, "", fmt.Errorf("after label %s: want , or }", name)
		}
	}
}

func parseValue(s string) (float64, error) {
	switch s {
	case "+Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	case "NaN":
		return math.NaN(), nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || strings.ContainsAny(s, "_xXpP") || strings.EqualFold(s, "inf") || strings.EqualFold(s, "infinity") {
		return 0, fmt.Errorf("bad value %q", s)
	}
	return v, nil
}

// checkEscapes accepts only the escapes the format defines: \\ and \n, and
// \" in label values.
func checkEscapes(s string, quote bool) error {
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			continue
		}
		i++
		if i >= len(s) || !(s[i] == '\\' || s[i] == 'n' || (quote && s[i] == '"')) {
			return fmt.Errorf("bad escape in %q", s)
		}
	}
	return nil
}

func seriesKey(name string, ls map[string]string) string {
	if len(ls) == 0 {
		return name
	}
	keys := make([]string, 0, len(ls))
	for k := range ls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, ls[k])
	}
	b.WriteByte('}')
	return b.String()
}
