#include "report/return_curve.h"

namespace ebb {

void ReturnCurve::init(uint64_t cold_ms, uint64_t delay_ms, uint64_t mark_pages) {
  cold_ms_ = cold_ms;
  delay_ms_ = delay_ms;
  mark_pages_ = mark_pages ? mark_pages : 1;
  reset();
}

void ReturnCurve::Ring::add(uint64_t now, uint64_t width, uint64_t peak, uint64_t peak_t, uint64_t drawn) {
  if (n && now < s[head].t + width) {
    if (peak > s[head].peak || (peak == s[head].peak && peak_t > s[head].peak_t)) {
      s[head].peak = peak;
      s[head].peak_t = peak_t;
    }
    return;
  }
  head = (head + 1) % kRing;
  s[head] = Sample{now, peak, peak_t, drawn};
  if (n < kRing) ++n;
}

uint64_t ReturnCurve::Ring::swing(uint64_t now, uint64_t span, uint64_t in_use) const {
  uint64_t best = 0;
  for (unsigned k = 0, i = head; k < n; ++k, i = (i + kRing - 1) % kRing) {
    if (now > s[i].t && now - s[i].t >= span) break;  // the older ones too
    const uint64_t age = now > s[i].peak_t ? now - s[i].peak_t : 0;
    if (age >= span || s[i].peak <= in_use) continue;
    // (1 - age / span)^2: most of a mass free goes back in the first half.
    // Pages < 2^32 and span < 2^22 ms (COLD_MS <= 3600000): no overflow.
    const uint64_t left = span - age;
    const uint64_t v = (s[i].peak - in_use) * left / span * left / span;
    if (v > best) best = v;
  }
  return best;
}

uint64_t ReturnCurve::Ring::drawn_since(uint64_t now, uint64_t span, uint64_t drawn) const {
  // No history yet (the first pass): everything drawn so far counts. With
  // no bucket in the span (the thread slept longer), everything drawn since
  // the newest one: too much slack at worst, for one pass.
  if (n == 0) return drawn;
  uint64_t from = s[head].drawn;
  for (unsigned k = 0, i = head; k < n; ++k, i = (i + kRing - 1) % kRing) {
    if (now > s[i].t && now - s[i].t >= span) break;
    from = s[i].drawn;
  }
  return drawn - from;
}

ReturnPlan ReturnCurve::plan(uint64_t now, uint64_t in_use, uint64_t peak, uint64_t peak_ms, uint64_t warm,
                             uint64_t drawn, bool growing, uint64_t headroom) {
  ReturnPlan p{};
  p.min_age_ms = delay_ms_;
  p.max_age_ms = 10 * cold_ms_;
  uint64_t slack = 0;
  if (cold_ms_) {
    // (The draws of the last period, counted before this pass's bucket.)
    slack = ring_.drawn_since(now, cold_ms_, drawn);
    ring_.add(now, cold_ms_ / 16 ? cold_ms_ / 16 : 1, peak, peak_ms, drawn);
    p.swing_pages = ring_.swing(now, cold_ms_, in_use);
    const uint64_t cushion = in_use / 4 > mark_pages_ ? in_use / 4 : mark_pages_;
    if (slack > cushion) slack = cushion;
    if (growing) slack = 0;
  }
  p.keep_pages = p.swing_pages > slack ? p.swing_pages : slack;
  if (p.keep_pages > headroom) {
    p.keep_pages = headroom;
    p.capped = true;
  }
  p.excess_pages = warm > p.keep_pages ? warm - p.keep_pages : 0;
  // Less than the mark is not worth a pass's madvise calls (the seeds'
  // watermark) unless it is all that is left.
  if (p.excess_pages < mark_pages_ && p.excess_pages < warm) p.excess_pages = 0;
  // A mass free (a swing of a quarter of what is still in use, and of four
  // marks: not the ups and downs of a steady program) is followed closely
  // while the curve lets it go, as long as warm memory is left for it to let
  // go: a pass every DELAY_MS / 4, and blocks that young go back (the heap's
  // free lists are cold-first: the oldest first).
  p.follow = warm >= mark_pages_ && p.swing_pages >= 4 * mark_pages_ && p.swing_pages >= in_use / 4;
  if (p.follow) p.min_age_ms = (delay_ms_ + 3) / 4;
  p.decaying = p.swing_pages > 0 || slack > 0;
  if (p.excess_pages || growing || p.capped) p.slab_cold_ms = p.min_age_ms;
  else if (slack >= mark_pages_) p.slab_cold_ms = p.max_age_ms;
  else p.slab_cold_ms = cold_ms_ / 2 > delay_ms_ ? cold_ms_ / 2 : delay_ms_;
  return p;
}

}  // namespace ebb
