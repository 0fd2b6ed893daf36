package console

import (
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cordon-gw/cordon/policies"
)

var funcs = template.FuncMap{
	"num":       formatNum,
	"numf":      func(f float64) string { return formatNum(int64(math.Round(f))) },
	"pct":       pct,
	"when":      when,
	"ago":       ago,
	"join":      func(s []string, sep string) string { return strings.Join(s, sep) },
	"pe":        url.PathEscape,
	"qe":        url.QueryEscape,
	"value":     formatValue,
	"ms":        formatMillis,
	"rate":      formatRate,
	"iso":       func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"add":       func(a, b int) int { return a + b },
	"prev":      func(n int64) int64 { return n - 1 },
	"reviewCtx": func(v *view, r policies.Review) reviewCtx { return reviewCtx{V: v, R: r} },
	"list":      func(s ...string) []string { return s },
	"int64":     func(n int) int64 { return int64(n) },
	"rateStr":   rateStr,
	"plural":    plural,
	"yamlPre":   yamlLines,
	"cond":      ruleConditions,
	"zero":      func(t time.Time) bool { return t.IsZero() },
	"upper":     strings.ToUpper,
	"title":     sentence,
}

// parsePages parses every page template on top of the layout and the
// shared partials.
func parsePages() (map[string]*template.Template, error) {
	base, err := template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html")
	if err != nil {
		return nil, fmt.Errorf("console: templates: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("console: templates: %w", err)
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		name := path.Base(n)
		if name == "layout.html" || name == "partials.html" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

func formatNum(v int64) string {
	s := strconv.FormatInt(v, 10)
	neg := false
	if v < 0 {
		neg, s = true, s[1:]
	}
	var b []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			b = append(b, ',')
		}
		b = append(b, s[i])
	}
	if neg {
		return "-" + string(b)
	}
	return string(b)
}

func pct(part, whole int64) string {
	if whole == 0 {
		return "0%"
	}
	return strconv.FormatFloat(100*float64(part)/float64(whole), 'f', 1, 64) + "%"
}

func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("Jan 2, 15:04 UTC")
}

// ago is a short relative time ("4 min ago").
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < 45*time.Second:
		return fmt.Sprintf("%d s ago", int(d.Seconds()))
	case d < 90*time.Minute:
		return fmt.Sprintf("%d min ago", int(math.Max(1, math.Round(d.Minutes()))))
	case d < 36*time.Hour:
		return fmt.Sprintf("%d h ago", int(math.Round(d.Hours())))
	default:
		return fmt.Sprintf("%d days ago", int(math.Round(d.Hours()/24)))
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return formatNum(int64(n)) + " " + many
}

func formatMillis(ms float64) string {
	switch {
	case ms <= 0:
		return "—"
	case ms < 1:
		return strconv.FormatFloat(ms*1000, 'f', 0, 64) + " µs"
	case ms < 10:
		return strconv.FormatFloat(ms, 'f', 2, 64) + " ms"
	default:
		return strconv.FormatFloat(ms, 'f', 1, 64) + " ms"
	}
}

func formatRate(r float64) string {
	switch {
	case r <= 0:
		return "0"
	case r < 10:
		return strconv.FormatFloat(r, 'f', 1, 64)
	default:
		return formatNum(int64(math.Round(r)))
	}
}

// formatValue shows a diff value (any JSON value) compactly: lists as
// comma-separated items, objects as key: value pairs, strings bare.
func formatValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "—"
	case string:
		return x
	case bool:
		if x {
			return "yes"
		}
		return "no"
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = formatValue(e)
		}
		return strings.Join(parts, ", ")
	case map[string]any:
		var parts []string
		for _, k := range sortedKeys(x) {
			parts = append(parts, k+": "+formatValue(x[k]))
		}
		return strings.Join(parts, "; ")
	}
	return fmt.Sprint(v)
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// yamlLine is one line of a YAML document, split for light highlighting.
type yamlLine struct {
	Indent, Key, Rest, Comment string
}

// yamlLines splits a YAML document for the read-only view: keys,
// values and comments get their own colour; nothing is interpreted.
func yamlLines(doc string) []yamlLine {
	lines := strings.Split(strings.TrimRight(doc, "\n"), "\n")
	out := make([]yamlLine, 0, len(lines))
	for _, l := range lines {
		var y yamlLine
		trimmed := strings.TrimLeft(l, " ")
		y.Indent = l[:len(l)-len(trimmed)]
		if strings.HasPrefix(trimmed, "#") {
			y.Comment = trimmed
			out = append(out, y)
			continue
		}
		body := trimmed
		if strings.HasPrefix(body, "- ") {
			y.Indent += "- "
			body = body[2:]
		}
		if i := strings.Index(body, ":"); i > 0 && !strings.ContainsAny(body[:i], "\"'{[ ") && (i == len(body)-1 || body[i+1] == ' ') {
			y.Key, y.Rest = body[:i+1], body[i+1:]
		} else {
			y.Rest = body
		}
		out = append(out, y)
	}
	return out
}

// condition is one match criterion of a rule, for the rules table.
type condition struct {
	Name   string
	Values []string
}

// ruleConditions lists what a rule matches on, in reading order.
func ruleConditions(r policies.Rule) []condition {
	var out []condition
	add := func(name string, v []string) {
		if len(v) > 0 {
			out = append(out, condition{name, v})
		}
	}
	add("users", r.Users)
	add("groups", r.Groups)
	add("locations", r.Locations)
	add("clients", r.ClientCIDRs)
	add("categories", r.Categories)
	add("threats", r.Threats)
	add("domains", r.Domains)
	add("lists", r.Lists)
	add("paths", r.Paths)
	add("countries", r.Countries)
	add("protocols", r.Protocols)
	if s := r.Schedule; s != nil {
		days := "every day"
		if len(s.Days) > 0 {
			days = strings.Join(s.Days, ", ")
		}
		span := "all day"
		if s.From != "" || s.To != "" {
			span = s.From + "–" + s.To
		}
		v := days + " " + span
		if s.TimeZone != "" {
			v += " (" + s.TimeZone + ")"
		}
		out = append(out, condition{"schedule", []string{v}})
	}
	return out
}

// reviewCtx is what the review-actions partial gets.
type reviewCtx struct {
	V *view
	R policies.Review
}
