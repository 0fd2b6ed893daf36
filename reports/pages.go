package reports

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/cordon-gw/cordon/internal/webui"
)

//go:embed templates/*.html
var templateFS embed.FS

var pageTmpl = template.Must(template.New("").Funcs(template.FuncMap{
	"num":   formatNum,
	"bytes": formatBytes,
	"pct":   pct,
	"when":  func(t time.Time) string { return t.UTC().Format("Jan 2 15:04") },
	"day":   func(t time.Time) string { return t.UTC().Format("Mon Jan 2 15:04 MST") },
}).ParseFS(templateFS, "templates/*.html"))

// rangeLink is one entry of the range selector.
type rangeLink struct {
	Label, Href string
	Active      bool
}

// pageData is what the page template renders.
type pageData struct {
	Title     string
	Scope     string
	Subject   string
	Rep       *Report
	Ranges    []rangeLink
	CSVHref   string
	JSONHref  string
	Timeline  *timelineChart
	Cats      *barChart
	Domains   *barChart
	BlockCats *barChart
	Users     *barChart
	Groups    *barChart
	Locations *barChart
	Generated time.Time
	// CSS and Nav are the look and the navigation shared with the admin
	// console.
	CSS template.CSS
	Nav template.HTML
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, rep *Report, q Query) {
	d := pageData{Rep: rep, Scope: rep.Scope, Subject: rep.Subject, Generated: h.r.Now().UTC(), CSS: webui.CSS(), Nav: webui.Nav("reports")}
	if rep.Scope == ScopeAll.String() {
		d.Title = "Overview"
	} else {
		d.Title = rep.Subject
	}
	span := q.To.Sub(q.From)
	for _, rg := range []struct {
		label, since string
		d            time.Duration
	}{{"24 hours", "24h", 24 * time.Hour}, {"7 days", "7d", 7 * 24 * time.Hour}, {"30 days", "30d", 30 * 24 * time.Hour}} {
		d.Ranges = append(d.Ranges, rangeLink{Label: rg.label, Href: "?from=" + rg.since, Active: span == rg.d})
	}
	v := r.URL.Query()
	v.Set("format", "csv")
	d.CSVHref = "?" + v.Encode()
	v.Set("format", "json")
	d.JSONHref = "?" + v.Encode()
	d.Timeline = newTimeline(rep.Timeline)
	d.Cats = newBarChart(rep.TopCategories, "#3b6fd8", nil)
	d.Domains = newBarChart(rep.TopDomains, "#2a9d8f", nil)
	d.BlockCats = newBarChart(rep.BlockedCategories, "#d64545", nil)
	d.Users = newBarChart(rep.TopUsersByBlocks, "#d64545", func(name string) string { return "/reports/users/" + url.PathEscape(name) })
	d.Groups = newBarChart(rep.TopGroups, "#7a5cc7", func(name string) string { return "/reports/groups/" + url.PathEscape(name) })
	d.Locations = newBarChart(rep.TopLocations, "#c7872a", func(name string) string { return "/reports/locations/" + url.PathEscape(name) })
	var buf bytes.Buffer
	if err := pageTmpl.ExecuteTemplate(&buf, "page.html", &d); err != nil {
		h.fail(w, r, fmt.Errorf("reports: render page: %w", err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(buf.Bytes())
}

// barChart is a horizontal bar chart: one row per entry, the bar width
// proportional to the largest count.
type barChart struct {
	Width, Height int
	Rows          []barRow
}

type barRow struct {
	Label, Value, Href, Color string
	Y, TextY                  int
	W                         float64
}

const (
	barLabelW = 190
	barAreaW  = 330
	barRowH   = 26
)

func newBarChart(list []Count, color string, href func(string) string) *barChart {
	c := &barChart{Width: barLabelW + barAreaW + 70, Height: len(list)*barRowH + 4}
	var max int64 = 1
	for _, e := range list {
		if e.Count > max {
			max = e.Count
		}
	}
	for i, e := range list {
		label := e.Name
		if label == "" {
			label = "(none)"
		}
		if len(label) > 28 {
			label = label[:27] + "…"
		}
		row := barRow{
			Label: label, Value: formatNum(e.Count), Color: color,
			Y: i*barRowH + 4, TextY: i*barRowH + 4 + 14,
			W: math.Max(2, float64(barAreaW)*float64(e.Count)/float64(max)),
		}
		if href != nil {
			row.Href = href(e.Name)
		}
		c.Rows = append(c.Rows, row)
	}
	return c
}

// timelineChart is the per-hour column chart: requests with the blocked
// part stacked in red, a light grid and hour labels.
type timelineChart struct {
	Unit                                         string // "hour" or "day" per column
	Width, Height, PlotTop, PlotBottom, PlotLeft int
	Bars                                         []tlBar
	Grid                                         []tlGrid
	Labels                                       []tlLabel
}

type tlBar struct {
	X, W, Y, H, BY, BH float64
	Title              string
}

type tlGrid struct {
	Y     float64
	Label string
}

type tlLabel struct {
	X     float64
	Label string
}

func newTimeline(points []HourPoint) *timelineChart {
	c := &timelineChart{Width: 1200, Height: 220, PlotTop: 12, PlotBottom: 190, PlotLeft: 56, Unit: "hour"}
	if len(points) > 8*24 {
		// Long ranges: one column per day, or the columns get too thin.
		points, c.Unit = perDay(points), "day"
	}
	plotW := float64(c.Width - c.PlotLeft - 8)
	plotH := float64(c.PlotBottom - c.PlotTop)
	var max int64
	for _, p := range points {
		if p.Requests > max {
			max = p.Requests
		}
	}
	scale := niceCeil(max)
	for i := 0; i <= 4; i++ {
		v := scale * int64(i) / 4
		c.Grid = append(c.Grid, tlGrid{Y: float64(c.PlotBottom) - plotH*float64(i)/4, Label: formatNum(v)})
	}
	n := len(points)
	if n == 0 {
		return c
	}
	slot := plotW / float64(n)
	gap := math.Min(2, slot*0.2)
	every := labelEvery(n)
	if c.Unit == "day" {
		every = (n + 9) / 10
	}
	for i, p := range points {
		x := float64(c.PlotLeft) + slot*float64(i)
		h := plotH * float64(p.Requests) / float64(scale)
		bh := plotH * float64(p.Blocked) / float64(scale)
		c.Bars = append(c.Bars, tlBar{
			X: x + gap/2, W: math.Max(slot-gap, 0.5),
			Y: float64(c.PlotBottom) - h, H: h,
			BY: float64(c.PlotBottom) - bh, BH: bh,
			Title: fmt.Sprintf("%s — %s requests, %s blocked", p.Hour.Format(tipFormat[c.Unit]), formatNum(p.Requests), formatNum(p.Blocked)),
		})
		if i%every == 0 && x+slot/2 < float64(c.Width)-24 { // no label cut at the right edge
			label := p.Hour.Format("15:00")
			if c.Unit == "day" || p.Hour.Hour() == 0 || n > 48 {
				label = p.Hour.Format("Jan 2")
			}
			c.Labels = append(c.Labels, tlLabel{X: x + slot/2, Label: label})
		}
	}
	return c
}

var tipFormat = map[string]string{"hour": "Jan 2 15:00", "day": "Mon Jan 2"}

// labelEvery spaces hour labels: every 2 or 4 hours up to two days,
// then one a day (hourly charts span at most 8 days).
func labelEvery(n int) int {
	switch {
	case n <= 24:
		return 2
	case n <= 48:
		return 4
	default:
		return 24
	}
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (at least 4, so
// the four grid steps are whole numbers).
func niceCeil(v int64) int64 {
	if v <= 4 {
		return 4
	}
	p := int64(1)
	for p*10 <= v {
		p *= 10
	}
	for _, m := range []int64{1, 2, 4, 5, 8, 10} {
		if m*p >= v && (m*p)%4 == 0 {
			return m * p
		}
	}
	return 10 * p
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

func formatBytes(v int64) string {
	const unit = 1024
	if v < unit {
		return strconv.FormatInt(v, 10) + " B"
	}
	f := float64(v)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= unit
		if f < unit {
			return strconv.FormatFloat(f, 'f', 1, 64) + " " + u
		}
	}
	return strconv.FormatFloat(f/unit, 'f', 1, 64) + " PiB"
}

func pct(part, whole int64) string {
	if whole == 0 {
		return "0%"
	}
	return strconv.FormatFloat(100*float64(part)/float64(whole), 'f', 1, 64) + "%"
}
