package main

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
)

// A small SVG chart writer: line charts (cost against watched jobs or
// rate, linear or log axes) and grouped bar charts. No dependency: the
// report must build on a fresh machine with the module's own go.sum.

// Point is one (x, y) of a series.
type Point struct{ X, Y float64 }

// Series is one line of a chart.
type Series struct {
	Name   string
	Points []Point
	// Dashed draws a reference line (a target, a baseline).
	Dashed bool
}

// LineChart plots series against a shared x axis.
type LineChart struct {
	Title, XLabel, YLabel string
	LogX, LogY            bool
	// YFromZero starts a linear y axis at 0 (the default for costs).
	YFromZero bool
	Series    []Series
}

// BarChart draws one group of bars per category, one bar per series.
type BarChart struct {
	Title, YLabel string
	Categories    []string
	Series        []BarSeries
}

// BarSeries gives one value per category (NaN: no bar).
type BarSeries struct {
	Name   string
	Values []float64
}

const (
	chartW, chartH                 = 720, 420
	padL, padR, padT, padB         = 80, 190, 48, 60
	plotW, plotH                   = chartW - padL - padR, chartH - padT - padB
	fontFamily                     = "DejaVu Sans, Helvetica, Arial, sans-serif"
	gridColor, axisColor, txtColor = "#dddddd", "#444444", "#222222"
)

// palette is colour-blind friendly (Okabe-Ito).
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"}

// axis maps data values to pixels.
type axis struct {
	lo, hi float64
	log    bool
	ticks  []float64
}

func newAxis(lo, hi float64, log, fromZero bool) axis {
	if log {
		lo, hi = math.Max(lo, 1e-12), math.Max(hi, 1e-12)
		a := axis{lo: math.Pow(10, math.Floor(math.Log10(lo))), hi: math.Pow(10, math.Ceil(math.Log10(hi))), log: true}
		if a.hi <= a.lo {
			a.hi = a.lo * 10
		}
		for t := a.lo; t <= a.hi*1.0001; t *= 10 {
			a.ticks = append(a.ticks, t)
		}
		return a
	}
	if fromZero && lo > 0 {
		lo = 0
	}
	if hi <= lo {
		hi = lo + 1
	}
	step := niceStep((hi - lo) / 5)
	a := axis{lo: math.Floor(lo/step) * step, hi: math.Ceil(hi/step) * step}
	for t := a.lo; t <= a.hi+step/2; t += step {
		a.ticks = append(a.ticks, t)
	}
	return a
}

// niceStep rounds a raw step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// frac is where v lies between lo (0) and hi (1).
func (a axis) frac(v float64) float64 {
	if a.log {
		return (math.Log10(math.Max(v, 1e-12)) - math.Log10(a.lo)) / (math.Log10(a.hi) - math.Log10(a.lo))
	}
	return (v - a.lo) / (a.hi - a.lo)
}

// fmtNum prints axis and table numbers compactly: 100k, 1.5M, 0.25.
func fmtNum(v float64) string {
	av := math.Abs(v)
	switch {
	case v == 0:
		return "0"
	case av >= 1e9:
		return trimFloat(v/1e9) + "G"
	case av >= 1e6:
		return trimFloat(v/1e6) + "M"
	case av >= 1e4:
		return trimFloat(v/1e3) + "k"
	case av >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case av >= 1:
		return trimFloat(v)
	default:
		return strconv.FormatFloat(v, 'g', 2, 64)
	}
}

func trimFloat(v float64) string {
	s := strconv.FormatFloat(v, 'f', 2, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

type svgBuf struct{ strings.Builder }

func (b *svgBuf) f(format string, args ...any) { fmt.Fprintf(&b.Builder, format, args...) }

func (b *svgBuf) text(x, y float64, anchor, size, body string, extra string) {
	b.f(`<text x="%.1f" y="%.1f" text-anchor="%s" font-size="%s" fill="%s"%s>%s</text>`+"\n", x, y, anchor, size, txtColor, extra, html.EscapeString(body))
}

func (b *svgBuf) open(title string) {
	b.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="%s">`+"\n", chartW, chartH, chartW, chartH, fontFamily)
	b.f(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	b.text(chartW/2, 26, "middle", "16", title, ` font-weight="bold"`)
}

func (b *svgBuf) yAxis(ya axis, label string) {
	for _, t := range ya.ticks {
		y := padT + plotH*(1-ya.frac(t))
		b.f(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`+"\n", padL, y, padL+plotW, y, gridColor)
		b.text(padL-6, y+4, "end", "11", fmtNum(t), "")
	}
	b.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s"/>`+"\n", padL, padT, padL, padT+plotH, axisColor)
	b.text(18, padT+plotH/2, "middle", "12", label, fmt.Sprintf(` transform="rotate(-90 18 %d)"`, padT+plotH/2))
}

func (b *svgBuf) legend(names []string, dashed []bool) {
	for i, n := range names {
		y := float64(padT + 10 + 20*i)
		x := float64(padL + plotW + 16)
		dash := ""
		if dashed != nil && dashed[i] {
			dash = ` stroke-dasharray="6 4"`
		}
		b.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"%s/>`+"\n", x, y, x+22, y, palette[i%len(palette)], dash)
		b.text(x+28, y+4, "start", "11", n, "")
	}
}

// SVG renders the chart. Points with a non-positive coordinate on a log
// axis, or NaN, are left out.
func (c LineChart) SVG() string {
	xlo, xhi, ylo, yhi := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	usable := func(p Point) bool {
		if math.IsNaN(p.X) || math.IsNaN(p.Y) || math.IsInf(p.X, 0) || math.IsInf(p.Y, 0) {
			return false
		}
		return (!c.LogX || p.X > 0) && (!c.LogY || p.Y > 0)
	}
	for _, s := range c.Series {
		for _, p := range s.Points {
			if !usable(p) {
				continue
			}
			xlo, xhi = math.Min(xlo, p.X), math.Max(xhi, p.X)
			ylo, yhi = math.Min(ylo, p.Y), math.Max(yhi, p.Y)
		}
	}
	if math.IsInf(xlo, 0) {
		xlo, xhi, ylo, yhi = 1, 10, 1, 10
	}
	if xlo == xhi && !c.LogX {
		xlo, xhi = xlo-1, xhi+1
	}
	xa := newAxis(xlo, xhi, c.LogX, false)
	ya := newAxis(ylo, yhi, c.LogY, c.YFromZero || !c.LogY)
	var b svgBuf
	b.open(c.Title)
	b.yAxis(ya, c.YLabel)
	for _, t := range xa.ticks {
		x := padL + plotW*xa.frac(t)
		b.f(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>`+"\n", x, padT, x, padT+plotH, gridColor)
		b.text(x, padT+plotH+18, "middle", "11", fmtNum(t), "")
	}
	b.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s"/>`+"\n", padL, padT+plotH, padL+plotW, padT+plotH, axisColor)
	b.text(padL+plotW/2, chartH-16, "middle", "12", c.XLabel, "")
	var names []string
	var dashed []bool
	for i, s := range c.Series {
		col := palette[i%len(palette)]
		var pts []string
		for _, p := range s.Points {
			if !usable(p) {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", padL+plotW*xa.frac(p.X), padT+plotH*(1-ya.frac(p.Y))))
		}
		dash := ""
		if s.Dashed {
			dash = ` stroke-dasharray="6 4"`
		}
		b.f(`<polyline fill="none" stroke="%s" stroke-width="2.5"%s points="%s"><title>%s</title></polyline>`+"\n", col, dash, strings.Join(pts, " "), html.EscapeString(s.Name))
		if !s.Dashed {
			for _, p := range pts {
				x, y, _ := strings.Cut(p, ",")
				b.f(`<circle cx="%s" cy="%s" r="4" fill="%s"/>`+"\n", x, y, col)
			}
		}
		names, dashed = append(names, s.Name), append(dashed, s.Dashed)
	}
	b.legend(names, dashed)
	b.f("</svg>\n")
	return b.String()
}

// SVG renders the bar chart.
func (c BarChart) SVG() string {
	hi := 0.0
	for _, s := range c.Series {
		for _, v := range s.Values {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				hi = math.Max(hi, v)
			}
		}
	}
	ya := newAxis(0, hi, false, true)
	var b svgBuf
	b.open(c.Title)
	b.yAxis(ya, c.YLabel)
	b.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s"/>`+"\n", padL, padT+plotH, padL+plotW, padT+plotH, axisColor)
	nc, ns := max(len(c.Categories), 1), max(len(c.Series), 1)
	groupW := float64(plotW) / float64(nc)
	barW := groupW * 0.7 / float64(ns)
	var names []string
	for si, s := range c.Series {
		col := palette[si%len(palette)]
		for ci, v := range s.Values {
			if ci >= len(c.Categories) || math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			x := padL + groupW*float64(ci) + groupW*0.15 + barW*float64(si)
			h := plotH * ya.frac(v)
			b.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %s</title></rect>`+"\n",
				x, padT+plotH-h, barW, h, col, html.EscapeString(s.Name), html.EscapeString(c.Categories[ci]), fmtNum(v))
			b.text(x+barW/2, padT+plotH-h-4, "middle", "10", fmtNum(v), "")
		}
		names = append(names, s.Name)
	}
	for ci, cat := range c.Categories {
		b.text(padL+groupW*(float64(ci)+0.5), padT+plotH+18, "middle", "11", cat, "")
	}
	b.legend(names, nil)
	b.f("</svg>\n")
	return b.String()
}
