// svg_plot.cpp — see svg_plot.h.
#include "svg_plot.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

namespace ebb::svg {

std::vector<double> nice_ticks(double max, int target) {
  if (!(max > 0) || !std::isfinite(max)) max = 1;
  if (target < 1) target = 1;
  double raw = max / target;
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * mag;
    if (step >= raw) break;
  }
  std::vector<double> ticks;
  // Round each tick to kill accumulated floating-point error (0.30000000004).
  for (int i = 0;; ++i) {
    double v = std::round(i * step / mag * 1e6) / 1e6 * mag;
    ticks.push_back(v);
    if (v >= max - step * 1e-9) break;
  }
  return ticks;
}

std::string xml_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default:
        // Control characters other than tab/newline are not allowed in XML.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n')
          out += ' ';
        else
          out += c;
    }
  }
  return out;
}

std::string palette(size_t i) {
  // Tableau-10: distinguishable and readable on white.
  static const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                 "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                                 "#bcbd22", "#17becf"};
  return colors[i % (sizeof colors / sizeof colors[0])];
}

namespace {

// printf into a std::string.
template <typename... Args>
std::string fmt(const char* f, Args... args) {
  char buf[512];
  snprintf(buf, sizeof buf, f, args...);
  return buf;
}

// Tick label: as many decimals as the step needs, no more.
std::string tick_label(double v, double step) {
  int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  return fmt("%.*f", decimals, v);
}

// Thins a long series to at most ~4 points per pixel column (first, min, max,
// last), which keeps its visible shape while keeping the file small.
std::vector<Point> thin(const std::vector<Point>& pts, double x_max, double plot_w) {
  if (pts.size() < 2000) return pts;
  std::vector<Point> out;
  size_t i = 0;
  while (i < pts.size()) {
    long col = std::lround(pts[i].x / x_max * plot_w);
    size_t j = i, lo = i, hi = i;
    while (j < pts.size() && std::lround(pts[j].x / x_max * plot_w) == col) {
      if (pts[j].y < pts[lo].y) lo = j;
      if (pts[j].y > pts[hi].y) hi = j;
      ++j;
    }
    size_t last = j - 1;
    size_t keep[] = {i, std::min(lo, hi), std::max(lo, hi), last};
    for (size_t k = 0; k < 4; ++k)
      if (k == 0 || keep[k] != keep[k - 1]) out.push_back(pts[keep[k]]);
    i = j;
  }
  return out;
}

// Cuts `text` (UTF-8) with "…" so that it fits in about `max_px` at
// `font_px` (average glyph width ~0.6 em for the sans-serif fonts used).
std::string fit(const std::string& text, double max_px, double font_px) {
  size_t max_chars = std::max<size_t>(2, static_cast<size_t>(max_px / (font_px * 0.6)));
  size_t chars = 0, i = 0, cut = 0;
  for (; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) continue;
    if (chars == max_chars - 1) cut = i;
    if (++chars > max_chars) return text.substr(0, cut) + "\u2026";
  }
  return text;
}

}  // namespace

std::string render(const Chart& c) {
  const double W = c.width, H = c.height;
  const double left = 78, right = 210, top = c.subtitle.empty() ? 56 : 74, bottom = 58;
  const double pw = W - left - right, ph = H - top - bottom;

  double x_max = 0, y_max = 0;
  for (const auto& s : c.series)
    for (const auto& p : s.points) {
      x_max = std::max(x_max, p.x);
      y_max = std::max(y_max, p.y);
    }
  std::vector<double> xt = nice_ticks(x_max, 8), yt = nice_ticks(y_max, 6);
  x_max = xt.back();
  y_max = yt.back();
  double x_step = xt.size() > 1 ? xt[1] - xt[0] : x_max;
  double y_step = yt.size() > 1 ? yt[1] - yt[0] : y_max;
  auto X = [&](double x) { return left + x / x_max * pw; };
  auto Y = [&](double y) { return top + ph - y / y_max * ph; };

  std::string o;
  o += fmt("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
           "viewBox=\"0 0 %d %d\" font-family=\"Helvetica, Arial, sans-serif\">\n",
           c.width, c.height, c.width, c.height);
  o += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";

  // Title and subtitle, centred on the whole picture and cut to fit it.
  o += fmt("<text x=\"%.1f\" y=\"28\" font-size=\"18\" font-weight=\"bold\" "
           "text-anchor=\"middle\">",
           W / 2) +
       xml_escape(fit(c.title, W - 40, 18 * 1.1)) + "</text>\n";
  if (!c.subtitle.empty())
    o += fmt("<text x=\"%.1f\" y=\"50\" font-size=\"13\" fill=\"#555\" "
             "text-anchor=\"middle\">",
             W / 2) +
         xml_escape(fit(c.subtitle, W - 40, 13)) + "</text>\n";

  // Grid, ticks and tick labels.
  o += "<g font-size=\"12\" fill=\"#333\">\n";
  for (double v : xt) {
    double x = X(v);
    o += fmt("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>\n",
             x, top, x, top + ph);
    o += fmt("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n",
             x, top + ph, x, top + ph + 5);
    o += fmt("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", x,
             top + ph + 19, tick_label(v, x_step).c_str());
  }
  for (double v : yt) {
    double y = Y(v);
    o += fmt("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>\n",
             left, y, left + pw, y);
    o += fmt("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n",
             left - 5, y, left, y);
    o += fmt("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", left - 8,
             y + 4, tick_label(v, y_step).c_str());
  }
  o += "</g>\n";

  // Axes and axis labels.
  o += fmt("<path d=\"M%.1f %.1f V%.1f H%.1f\" fill=\"none\" stroke=\"#333\"/>\n", left,
           top, top + ph, left + pw);
  o += fmt("<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" text-anchor=\"middle\">",
           left + pw / 2, H - 14) +
       xml_escape(c.x_label) + "</text>\n";
  o += fmt("<text transform=\"translate(20 %.1f) rotate(-90)\" font-size=\"13\" "
           "text-anchor=\"middle\">",
           top + ph / 2) +
       xml_escape(c.y_label) + "</text>\n";

  bool any_points = false;
  for (const auto& s : c.series) any_points |= !s.points.empty();
  if (!any_points)
    o += fmt("<text x=\"%.1f\" y=\"%.1f\" font-size=\"14\" fill=\"#888\" "
             "text-anchor=\"middle\">no samples</text>\n",
             left + pw / 2, top + ph / 2);

  // The series, each with a dot where it ends (the process exited there).
  for (const auto& s : c.series) {
    if (s.points.empty()) continue;
    std::vector<Point> pts = thin(s.points, x_max, pw);
    o += "<g><title>" + xml_escape(s.label) + "</title>\n";
    o += "<polyline fill=\"none\" stroke=\"" + xml_escape(s.color) +
         "\" stroke-width=\"1.8\" stroke-linejoin=\"round\" points=\"";
    for (size_t i = 0; i < pts.size(); ++i) {
      if (i) o += ' ';
      o += fmt("%.1f,%.1f", X(pts[i].x), Y(pts[i].y));
    }
    o += "\"/>\n";
    o += fmt("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", X(pts.back().x),
             Y(pts.back().y), xml_escape(s.color).c_str());
    o += "</g>\n";
  }

  // Legend, to the right of the plot.
  double lx = left + pw + 18, ly = top + 8;
  o += "<g font-size=\"13\">\n";
  for (const auto& s : c.series) {
    o += fmt("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
             "stroke-width=\"3\"/>\n",
             lx, ly, lx + 22, ly, xml_escape(s.color).c_str());
    o += fmt("<text x=\"%.1f\" y=\"%.1f\">", lx + 30, ly + 4) +
         xml_escape(fit(s.label, W - lx - 36, 13)) + "</text>\n";
    if (!s.note.empty()) {
      ly += 16;
      o += fmt("<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#b00\">", lx + 30,
               ly + 4) +
           xml_escape(fit(s.note, W - lx - 36, 11)) + "</text>\n";
    }
    ly += 24;
  }
  o += "</g>\n</svg>\n";
  return o;
}

bool write_file(const std::string& path, const Chart& chart, std::string* error) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (f) f << render(chart);
    if (!f || !f.flush()) {
      if (error) *error = "cannot write " + tmp + ": " + strerror(errno);
      std::remove(tmp.c_str());
      return false;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    if (error) *error = "cannot rename " + tmp + " to " + path + ": " + strerror(errno);
    std::remove(tmp.c_str());
    return false;
  }
  return true;
}

}  // namespace ebb::svg
