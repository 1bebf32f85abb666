// When free memory goes back: the return curve.
//
// The seeds report a block once it has been free for a fixed time. In a heap
// that gives nothing back for COLD_MS after a mass free, then everything at
// once; and it gives back fragments a steady program is about to take again.
// Instead each reporter pass asks how much of the heap's warm free memory the
// program's recent behaviour says it will take again, and gives back the
// rest, coldest first. Demand is the heap's pages in use (slabs and large
// blocks), sampled at its peak between passes:
//
//   swing  = max over the last COLD_MS of (peak_then - in_use_now)
//            * (1 - age / COLD_MS)^2, age from the moment the heap last
//            had peak_then in use (not from the pass that saw it)
//            what the program had in use a moment ago; the claim decays to
//            nothing over COLD_MS: a mass free starts going back at the
//            first pass (DELAY_MS) and is three quarters back by COLD_MS / 2
//            (the curve);
//   slack  = min(pages drawn from the heap in the last COLD_MS,
//                max(in_use / 4, mark))
//            a program that keeps taking pages from the heap keeps a cushion
//            of warm memory as large as what it takes per COLD_MS, up to a
//            quarter of what it uses: in steady churn the warm free memory is
//            mostly buddy fragments of the orders the program frees, taken
//            again as soon as their buddies come free (churn: 5-7 MiB beside
//            40 MiB in use); giving them back only means faulting them in
//            again. A trickle of allocations in a quiet program earns a
//            trickle of slack;
//   keep   = max(swing, slack).
//
// Warm memory beyond `keep` that has been free for at least DELAY_MS goes
// back now (less than the mark waits, unless it is all there is). Blocks
// free for longer than 10 * COLD_MS go back whatever `keep` says (a fragment
// a busy program never takes again). Free pages inside slabs in use follow
// in time: after DELAY_MS when the heap has an excess, after 10 * COLD_MS
// while the program is busy drawing, else after COLD_MS / 2.
//
// Samples are taken by the reporter thread only (no lock of its own).
#pragma once
#include <cstdint>

namespace ebb {

struct ReturnPlan {
  uint64_t excess_pages;  // warm pages to give back now (coldest first, free >= min_age_ms)
  uint64_t keep_pages;    // what the curve keeps (swing + slack)
  uint64_t swing_pages;   // of which the swing
  bool follow;            // a mass free decays: passes every DELAY_MS / 4, and min_age_ms is that too
  bool capped;            // keep was cut to the headroom under a memory limit
  uint64_t min_age_ms;    // nothing younger goes back (but with report_all)
  uint64_t max_age_ms;    // anything older goes back
  uint64_t slab_cold_ms;  // free slab pages this old go back
  bool decaying;          // a swing or the slack is still falling: look again soon
};

class ReturnCurve {
 public:
  void init(uint64_t cold_ms, uint64_t delay_ms, uint64_t mark_pages);
  // One pass: `in_use` pages of the heap handed out now (slabs, large
  // blocks) and `peak` the most since the last pass, which the heap last had
  // in use at `peak_ms` (the swing ages from then), `warm` free warm pages
  // of reportable order, `drawn` pages the heap ever handed out.
  // `growing`: the heap grew fast since the last pass; then free
  // memory is not kept for churn (no slack) and free slab pages go back
  // after DELAY_MS: the process should not grow while it holds them.
  // `headroom`: pages the process may still take before its memory limit's
  // pressure mark (report/pressure.h; UINT64_MAX: no limit): the curve never
  // keeps more, and free slab pages then go back after DELAY_MS too.
  ReturnPlan plan(uint64_t now, uint64_t in_use, uint64_t peak, uint64_t peak_ms, uint64_t warm, uint64_t drawn,
                  bool growing, uint64_t headroom = ~uint64_t{0});
  // The reporter itself moved `pages` out of use (it drained idle caches or
  // cached batches, emptying slabs): memory freed long ago, not a fall in
  // demand. The history moves down with it, so the swing does not grow.
  void discount(uint64_t pages) {
    for (Sample& x : ring_.s) x.peak = x.peak > pages ? x.peak - pages : 0;
  }
  // In a fork child: the parent's history is not the child's.
  void reset() { ring_.n = 0; }

 private:
  // Bucketed history of the peaks: one sample per COLD_MS / 16 (the highest
  // peak seen in it), the last 17.
  static constexpr unsigned kRing = 17;
  struct Sample {
    uint64_t t;       // when the bucket began
    uint64_t peak;
    uint64_t peak_t;  // when the heap last had `peak` in use
    uint64_t drawn;  // the heap's count when the bucket began
  };
  struct Ring {
    Sample s[kRing] = {};
    unsigned head = 0, n = 0;  // s[head] is the newest
    void add(uint64_t now, uint64_t width, uint64_t peak, uint64_t peak_t, uint64_t drawn);
    // max over samples younger than `span` of (peak - in_use) * (1 - age / span)^2,
    // age counted from peak_t.
    uint64_t swing(uint64_t now, uint64_t span, uint64_t in_use) const;
    // Pages drawn since the oldest bucket younger than `span` began.
    uint64_t drawn_since(uint64_t now, uint64_t span, uint64_t drawn) const;
  };
  Ring ring_;
  uint64_t cold_ms_ = 1000, delay_ms_ = 200, mark_pages_ = 256;
};

}  // namespace ebb
