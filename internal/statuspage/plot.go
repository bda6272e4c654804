package statuspage

import (
	"fmt"
	"time"

	"github.com/svcreg/svcreg/render"
)

// The plots are drawn here as SVG shapes with numeric attributes only; the
// template puts them into the page. No script, no charting library.
const (
	plotW, plotH = 600, 140
	padL, padR   = 44, 22
	padB, padTop = 22, 10
	minutes      = 60
)

type plot struct {
	Title string
	Note  string // what the plot holds, in words, for readers without SVG
	W, H  int
	Bars  []rect
	Dots  []dot
	Ticks []tick // y axis
	XAxis []tick // x axis
	Empty bool
}

// EmptyX and EmptyY place the note of an empty plot.
func (p plot) EmptyX() float64 { return (padL + plotW - padR) / 2 }
func (p plot) EmptyY() float64 { return (plotH - padB + padTop) / 2 }

type rect struct{ X, Y, W, H float64 }
type dot struct {
	X, Y  float64
	Label string
}
type tick struct {
	X, Y  float64
	Label string
}

func (p *plot) frame(yMax float64, unit func(float64) string) {
	p.W, p.H = plotW, plotH
	for i := 0; i <= 2; i++ {
		v := yMax * float64(i) / 2
		p.Ticks = append(p.Ticks, tick{X: padL - 6, Y: yAt(v, yMax), Label: unit(v)})
	}
	for _, m := range []int{60, 45, 30, 15, 0} {
		label := fmt.Sprintf("-%dm", m)
		if m == 0 {
			label = "now"
		}
		p.XAxis = append(p.XAxis, tick{X: xAt(float64(minutes - m)), Y: plotH - 6, Label: label})
	}
}

func xAt(minute float64) float64 { return padL + minute*float64(plotW-padL-padR)/minutes }
func yAt(v, max float64) float64 {
	return plotH - padB - v/max*float64(plotH-padB-padTop)
}

// rendersPlot counts renders per minute over the last hour.
func rendersPlot(now time.Time, renders []time.Time) plot {
	var counts [minutes]int
	total := 0
	for _, t := range renders {
		age := now.Sub(t)
		if age < 0 || age > render.StatusWindow {
			continue
		}
		i := minutes - 1 - int(age/time.Minute)
		if i < 0 {
			i = 0
		}
		counts[i]++
		total++
	}
	max := 1
	for _, c := range counts {
		max = maxInt(max, c)
	}
	p := plot{Title: "Renders per minute", Note: fmt.Sprintf("%d renders in the last hour", total), Empty: total == 0}
	p.frame(float64(max), func(v float64) string { return fmt.Sprintf("%.0f", v) })
	bw := (xAt(1) - xAt(0)) * 0.8
	for i, c := range counts {
		if c == 0 {
			continue
		}
		y := yAt(float64(c), float64(max))
		p.Bars = append(p.Bars, rect{X: xAt(float64(i)), Y: y, W: bw, H: plotH - padB - y})
	}
	return p
}

// latencyPlot shows each install's event-to-install latency.
func latencyPlot(now time.Time, installs []render.InstallSample) plot {
	var max time.Duration
	n := 0
	var sum time.Duration
	for _, in := range installs {
		if in.Latency > 0 {
			max = maxDur(max, in.Latency)
			sum += in.Latency
			n++
		}
	}
	// The axis goes a little past the slowest install, at least to 50ms.
	max = maxDur(50*time.Millisecond, max*6/5)
	p := plot{Title: "Event-to-install latency", Empty: n == 0}
	if n > 0 {
		p.Note = fmt.Sprintf("%d installs in the last hour, mean %s", n, (sum / time.Duration(n)).Round(time.Millisecond))
	} else {
		p.Note = "no install of a registry change in the last hour"
	}
	p.frame(max.Seconds(), func(v float64) string {
		return (time.Duration(v * float64(time.Second))).Round(time.Millisecond).String()
	})
	for _, in := range installs {
		if in.Latency <= 0 {
			continue
		}
		age := now.Sub(in.At)
		p.Dots = append(p.Dots, dot{
			X:     xAt(minutes - age.Minutes()),
			Y:     yAt(in.Latency.Seconds(), max.Seconds()),
			Label: in.Group + ": " + in.Latency.Round(time.Millisecond).String(),
		})
	}
	return p
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

func maxDur(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}
