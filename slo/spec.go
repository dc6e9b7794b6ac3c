package slo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// SLO is one service level objective, normalised from a Sloth prometheus/v1 or an OpenSLO v1
// spec. Queries are templates: "{{.window}}" is replaced by the evaluation window (5m, 1h,
// 30d, ...) before they are parsed.
type SLO struct {
	Service     string
	Name        string
	Description string
	// Objective is the target as a fraction in (0, 1): 0.999 for 99.9%.
	Objective float64
	// ErrorQuery and TotalQuery count bad events and all events over {{.window}} (event SLIs).
	ErrorQuery string
	TotalQuery string
	// RawErrorRatioQuery is the error ratio over {{.window}} (raw SLIs, Sloth's sli.raw).
	RawErrorRatioQuery string
	// Period is the SLO period from the spec (OpenSLO timeWindow); zero means the configured
	// default.
	Period   time.Duration
	Labels   map[string]string
	Alerting Alerting
	Source   Source
}

// Raw reports whether the SLI is a precomputed error ratio rather than errors and totals.
func (s SLO) Raw() bool { return s.RawErrorRatioQuery != "" }

// ID names the SLO uniquely: "service/name".
func (s SLO) ID() string { return s.Service + "/" + s.Name }

// Alerting is Sloth's alerting section, kept as given for rule generation.
type Alerting struct {
	Name        string
	Labels      map[string]string
	Annotations map[string]string
	PageAlert   AlertSpec
	TicketAlert AlertSpec
}

// AlertSpec is the page or ticket alert of an SLO.
type AlertSpec struct {
	Disable     bool
	Labels      map[string]string
	Annotations map[string]string
}

// Source tells where an SLO was defined, for error messages.
type Source struct {
	File   string
	Line   int
	Format string // "sloth" or "openslo"
	// Fields locates the spec fields behind SLO's fields ("name", "objective", "error_query",
	// "total_query", "error_ratio_query") so that validation points at the right line.
	Fields map[string]FieldPos
}

// FieldPos is the path and line of one field in a spec file.
type FieldPos struct {
	Path string
	Line int
}

func (s Source) at(key string) FieldPos {
	if fp, ok := s.Fields[key]; ok {
		return fp
	}
	return FieldPos{Path: key, Line: s.Line}
}

// Problem is one defect of a spec file, printed as "file:line: field: message".
type Problem struct {
	File    string
	Line    int
	Field   string
	Message string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems is every defect found in a set of spec files; as an error it prints one per line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, 0, len(ps))
	for _, p := range ps {
		lines = append(lines, p.String())
	}
	return strings.Join(lines, "\n")
}

func (ps Problems) sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].File != ps[j].File {
			return ps[i].File < ps[j].File
		}
		return ps[i].Line < ps[j].Line
	})
}

// ParseFiles reads Sloth and OpenSLO spec files (one or more YAML documents each), resolves
// OpenSLO indicatorRefs across all of them and validates the result. It returns the SLOs that
// parsed and every problem found; the SLOs are usable only when there are no problems.
func ParseFiles(paths ...string) ([]SLO, Problems) {
	return parseFiles(DefaultRegionLabel, paths...)
}

func parseFiles(regionLabel string, paths ...string) ([]SLO, Problems) {
	p := newSpecParser()
	p.regionLabel = regionLabel
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			p.problems = append(p.problems, Problem{File: path, Message: fmt.Sprintf("read: %v", err)})
			continue
		}
		p.parse(path, data)
	}
	return p.finish()
}

// Parse parses one spec file's contents; name is used in problems. See ParseFiles.
func Parse(name string, data []byte) ([]SLO, Problems) {
	p := newSpecParser()
	p.parse(name, data)
	return p.finish()
}

// specParser accumulates SLOs, OpenSLO SLI definitions and problems over several files.
type specParser struct {
	slos     []SLO
	sliDefs  map[string]openSLOIndicator
	pending  []pendingRef
	problems Problems
	// regionLabel is the label queries must be broken down by.
	regionLabel string
}

func newSpecParser() *specParser {
	return &specParser{sliDefs: map[string]openSLOIndicator{}, regionLabel: DefaultRegionLabel}
}

func (p *specParser) parse(file string, data []byte) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			p.problems = append(p.problems, Problem{File: file, Line: yamlErrorLine(err), Message: err.Error()})
			return
		}
		if len(doc.Content) == 0 {
			continue
		}
		r := &nodeReader{file: file, problems: &p.problems}
		root := doc.Content[0]
		if root.Kind != yaml.MappingNode {
			r.problem(root, "", "a spec document must be a mapping")
			continue
		}
		switch {
		case mapValue(root, "version") != nil:
			p.slos = append(p.slos, parseSloth(r, root)...)
		case mapValue(root, "apiVersion") != nil:
			p.parseOpenSLO(r, root)
		default:
			r.problem(root, "", `unknown spec format: expected Sloth "version: prometheus/v1" or OpenSLO "apiVersion: openslo/v1"`)
		}
	}
}

func (p *specParser) finish() ([]SLO, Problems) {
	p.resolveRefs()
	p.problems = append(p.problems, Validate(p.slos, p.regionLabel)...)
	p.problems.sort()
	return p.slos, p.problems
}

// yamlErrorLine extracts the line from a yaml.v3 syntax error ("yaml: line 3: ...").
func yamlErrorLine(err error) int {
	var line int
	msg := err.Error()
	if i := strings.Index(msg, "line "); i >= 0 {
		_, _ = fmt.Sscanf(msg[i:], "line %d", &line)
	}
	return line
}

// nodeReader walks YAML nodes strictly: unknown fields and wrong types become problems with
// the file and line of the offending node.
type nodeReader struct {
	file     string
	problems *Problems
	// keyLines maps a value node to the line of its key, where problems about the field are
	// reported (a mapping value starts on the line after its key).
	keyLines map[*yaml.Node]int
}

func (r *nodeReader) problem(n *yaml.Node, field, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
		if kl, ok := r.keyLines[n]; ok {
			line = kl
		}
	}
	*r.problems = append(*r.problems, Problem{File: r.file, Line: line, Field: field, Message: fmt.Sprintf(format, args...)})
}

// fields visits the keys of a mapping node, calling the handler of each known key and
// reporting unknown or duplicate keys.
func (r *nodeReader) fields(n *yaml.Node, path string, handlers map[string]func(v *yaml.Node, field string)) {
	n = resolveAlias(n)
	if n.Kind != yaml.MappingNode {
		r.problem(n, path, "expected a mapping, got %s", nodeKind(n))
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		field := joinField(path, k.Value)
		if seen[k.Value] {
			r.problem(k, field, "duplicate field")
			continue
		}
		seen[k.Value] = true
		if r.keyLines == nil {
			r.keyLines = map[*yaml.Node]int{}
		}
		r.keyLines[v] = k.Line
		h, ok := handlers[k.Value]
		if !ok {
			r.problem(k, field, "unknown field")
			continue
		}
		h(v, field)
	}
}

func (r *nodeReader) str(n *yaml.Node, field string) string {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		if n.Tag != "!!null" {
			r.problem(n, field, "expected a string, got %s", nodeKind(n))
		}
		return ""
	}
	return n.Value
}

func (r *nodeReader) float(n *yaml.Node, field string) float64 {
	var f float64
	if n.Kind != yaml.ScalarNode || n.Decode(&f) != nil {
		r.problem(n, field, "expected a number, got %q", n.Value)
		return 0
	}
	return f
}

func (r *nodeReader) boolean(n *yaml.Node, field string) bool {
	var b bool
	if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
		r.problem(n, field, "expected true or false, got %q", n.Value)
		return false
	}
	return b
}

// stringMap reads a map of strings. A sequence value (OpenSLO v1 allows label values to be
// lists) is joined with commas.
func (r *nodeReader) stringMap(n *yaml.Node, field string) map[string]string {
	if n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		r.problem(n, field, "expected a mapping of strings, got %s", nodeKind(n))
		return nil
	}
	m := make(map[string]string, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		switch v.Kind {
		case yaml.ScalarNode:
			m[k.Value] = v.Value
		case yaml.SequenceNode:
			vals := make([]string, 0, len(v.Content))
			for _, e := range v.Content {
				vals = append(vals, r.str(e, joinField(field, k.Value)))
			}
			m[k.Value] = strings.Join(vals, ",")
		default:
			r.problem(v, joinField(field, k.Value), "expected a string, got %s", nodeKind(v))
		}
	}
	return m
}

// seq returns the items of a sequence node, reporting any other kind.
func (r *nodeReader) seq(n *yaml.Node, field string) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		r.problem(n, field, "expected a list, got %s", nodeKind(n))
		return nil
	}
	items := make([]*yaml.Node, 0, len(n.Content))
	for _, c := range n.Content {
		items = append(items, resolveAlias(c))
	}
	return items
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 16; i++ {
		n = n.Alias
	}
	return n
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return resolveAlias(n.Content[i+1])
		}
	}
	return nil
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	default:
		return "an alias"
	}
}

func joinField(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
