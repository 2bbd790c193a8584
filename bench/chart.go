package main

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// chartSeries is one line: a strategy's MB/s against x.
type chartSeries struct {
	name string
	xys  plotter.XYs
}

// writeCharts draws throughput vs size (file-pipe) and throughput vs N
// (concurrent, one chart per pair), one line per strategy, as SVG and PNG
// into dir, and returns the file names written.
func writeCharts(dir string, rs []*result) ([]string, error) {
	var files []string
	draw := func(name, title, xLabel string, series []chartSeries) error {
		if len(series) == 0 {
			return nil
		}
		p := plot.New()
		p.Title.Text = title
		p.X.Label.Text = xLabel
		p.Y.Label.Text = "MB/s (median)"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min = 0
		p.Legend.Top = true
		p.Legend.Left = true
		var args []any
		for _, s := range series {
			args = append(args, s.name, s.xys)
		}
		if err := plotutil.AddLinePoints(p, args...); err != nil {
			return err
		}
		for _, ext := range []string{"svg", "png"} {
			f := fmt.Sprintf("%s.%s", name, ext)
			if err := p.Save(8*vg.Inch, 5*vg.Inch, filepath.Join(dir, f)); err != nil {
				return err
			}
			files = append(files, f)
		}
		return nil
	}
	size := chartData(rs, func(r *result) (string, bool) { return "file-pipe", r.Scenario == "file-pipe" },
		func(r *result) float64 { return float64(r.Size) / (1 << 10) })
	if err := draw("file-pipe", "file -> pipe: throughput vs copy size", "copy size (KiB)", size["file-pipe"]); err != nil {
		return files, err
	}
	byPair := chartData(rs, func(r *result) (string, bool) { return r.Pair, r.Scenario == "concurrent" },
		func(r *result) float64 { return float64(r.N) })
	for _, p := range slices.Sorted(maps.Keys(byPair)) {
		name := "concurrent-" + strings.ReplaceAll(p, "->", "-")
		if err := draw(name, p+": throughput vs concurrent copies", "concurrent copies (N)", byPair[p]); err != nil {
			return files, err
		}
	}
	return files, nil
}

// chartData groups results into charts (by group) and lines (by strategy,
// in first-seen order), with x from xOf and y = median MB/s.
func chartData(rs []*result, group func(*result) (string, bool), xOf func(*result) float64) map[string][]chartSeries {
	out := map[string][]chartSeries{}
	for _, r := range rs {
		g, ok := group(r)
		if !ok || r.Summary == nil || !(r.Summary.MBps > 0) {
			continue
		}
		series := out[g]
		i := 0
		for i < len(series) && series[i].name != r.Strategy {
			i++
		}
		if i == len(series) {
			series = append(series, chartSeries{name: r.Strategy})
		}
		series[i].xys = append(series[i].xys, plotter.XY{X: xOf(r), Y: r.Summary.MBps})
		out[g] = series
	}
	return out
}
