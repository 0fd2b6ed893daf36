package console

import (
	"fmt"
	"math"
	"time"
)

// hourPoint is one hour of the reports timeline.
type hourPoint struct {
	Hour     time.Time `json:"hour"`
	Requests int64     `json:"requests"`
	Blocked  int64     `json:"blocked"`
}

// columnChart is an inline-SVG column chart of requests per hour with
// the blocked part stacked in red, a light grid and hour labels.
type columnChart struct {
	Width, Height, Left, Top, Bottom int
	Bars                             []column
	Grid                             []gridLine
	Labels                           []axisLabel
	Label                            string
}

type column struct {
	X, W, Y, H, BY, BH float64
	Title              string
}

type gridLine struct {
	Y     float64
	Label string
}

type axisLabel struct {
	X     float64
	Label string
}

func newColumnChart(points []hourPoint, label string) *columnChart {
	c := &columnChart{Width: 560, Height: 200, Left: 40, Top: 10, Bottom: 172, Label: label}
	plotW, plotH := float64(c.Width-c.Left-6), float64(c.Bottom-c.Top)
	var peak int64
	for _, p := range points {
		peak = max(peak, p.Requests)
	}
	scale := niceCeil(peak)
	for i := 0; i <= 4; i++ {
		c.Grid = append(c.Grid, gridLine{Y: float64(c.Bottom) - plotH*float64(i)/4, Label: formatNum(scale * int64(i) / 4)})
	}
	if len(points) == 0 {
		return c
	}
	slot := plotW / float64(len(points))
	gap := math.Min(3, slot*0.25)
	every := max(1, (len(points)+5)/6)
	for i, p := range points {
		x := float64(c.Left) + slot*float64(i)
		h := plotH * float64(p.Requests) / float64(scale)
		bh := plotH * float64(p.Blocked) / float64(scale)
		c.Bars = append(c.Bars, column{
			X: x + gap/2, W: math.Max(slot-gap, 1), Y: float64(c.Bottom) - h, H: h, BY: float64(c.Bottom) - bh, BH: bh,
			Title: fmt.Sprintf("%s UTC: %s requests, %s blocked", p.Hour.UTC().Format("Jan 2 15:00"), formatNum(p.Requests), formatNum(p.Blocked)),
		})
		if i%every == 0 {
			c.Labels = append(c.Labels, axisLabel{X: x + slot/2, Label: p.Hour.UTC().Format("15:00")})
		}
	}
	return c
}

// niceCeil rounds v up to a round number divisible into four grid steps.
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

// bars is a horizontal bar list (label, bar, value) as inline SVG.
type bars struct {
	Width, Height int
	Rows          []bar
}

type bar struct {
	Label, Value, Href, Color string
	Y, TextY                  int
	W                         float64
}

func newBars(list []nameCount, color string, href func(string) string, n int) *bars {
	if len(list) > n {
		list = list[:n]
	}
	const labelW, areaW, rowH = 180, 300, 24
	b := &bars{Width: labelW + areaW + 70, Height: len(list)*rowH + 4}
	var peak int64 = 1
	for _, e := range list {
		peak = max(peak, e.Count)
	}
	for i, e := range list {
		label := e.Name
		if label == "" {
			label = "(none)"
		}
		if len([]rune(label)) > 26 {
			label = string([]rune(label)[:25]) + "…"
		}
		row := bar{Label: label, Value: formatNum(e.Count), Color: color, Y: i*rowH + 4, TextY: i*rowH + 17,
			W: math.Max(2, areaW*float64(e.Count)/float64(peak))}
		if href != nil {
			row.Href = href(e.Name)
		}
		b.Rows = append(b.Rows, row)
	}
	return b
}
