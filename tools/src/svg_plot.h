// svg_plot.h — a small hand-written SVG line chart (no plotting library).
//
// Knows nothing about allocators: it draws named series of (x, y) points on
// linear axes with "nice" ticks, a title, axis labels and a legend.
#pragma once

#include <string>
#include <vector>

namespace ebb::svg {

struct Point {
  double x;
  double y;
};

struct Series {
  std::string label;   // legend text
  std::string color;   // any SVG color, e.g. "#d62728"
  std::vector<Point> points;
  std::string note;    // shown after the label in the legend, e.g. "signal SIGSEGV"
};

struct Chart {
  std::string title;
  std::string subtitle;   // smaller line under the title (may be empty)
  std::string x_label;    // e.g. "time (s)"
  std::string y_label;    // e.g. "RSS (MiB)"
  std::vector<Series> series;
  int width = 960;
  int height = 540;
};

// The chart as a standalone SVG document.
std::string render(const Chart& chart);

// Writes render(chart) to `path` (via path + ".tmp" and rename, so a reader
// never sees half a file). On failure returns false and sets *error.
bool write_file(const std::string& path, const Chart& chart, std::string* error);

// Tick positions for an axis from 0 to `max`: multiples of 1, 2 or 5 × 10^k,
// about `target` of them, the last one >= max. Exposed for tests.
std::vector<double> nice_ticks(double max, int target = 6);

// Escapes &, <, >, " for XML text and attributes. Exposed for tests.
std::string xml_escape(const std::string& s);

// A distinct color for the i-th series.
std::string palette(size_t i);

}  // namespace ebb::svg
