#include "rl/step_metrics.hpp"

#include <cmath>
#include <vector>

#include "rl/distributed.hpp"

namespace r1 {

double Stat::value(Reduce r) const {
  switch (r) {
    case Reduce::sum: return sum;
    case Reduce::mean: return n > 0 ? sum / n : 0.0;
    case Reduce::std: {
      if (n <= 0) return 0.0;
      const double m = sum / n;
      return std::sqrt(std::max(0.0, sq / n - m * m));
    }
    case Reduce::max: return max;
    case Reduce::rate: return den > 0 ? sum / den : 0.0;
  }
  return 0.0;
}

namespace {

// Every Stat of `m` with its reduction, in declaration order, then the parts.
template <class M, class F>
void for_each_stat(M& m, F f) {
#define R1_STEP_METRIC_VISIT_(member, key, reduce, doc) f(key, m.member, Reduce::reduce);
  R1_STEP_METRICS(R1_STEP_METRIC_VISIT_)
#undef R1_STEP_METRIC_VISIT_
  for (auto& [name, s] : m.parts) f(nullptr, s, Reduce::mean);
}

}  // namespace

void StepMetrics::reduce(Distributed& dist) {
  if (!dist.active()) return;
  std::vector<double> sums, maxes;  // same checkers on every rank: same parts, same order
  for_each_stat(*this, [&](const char*, Stat& s, Reduce) {
    sums.insert(sums.end(), {s.sum, s.sq, s.n});
    maxes.insert(maxes.end(), {s.max, s.den});
  });
  sums = dist.sum(std::move(sums));
  maxes = dist.max(std::move(maxes));
  size_t i = 0, j = 0;
  for_each_stat(*this, [&](const char*, Stat& s, Reduce) {
    s.sum = sums[i++], s.sq = sums[i++], s.n = sums[i++];
    s.max = maxes[j++], s.den = maxes[j++];
  });
}

boost::json::object StepMetrics::to_json(int64_t step) const {
  boost::json::object o{{"step", step}};
  for_each_stat(*this, [&](const char* key, const Stat& s, Reduce r) {
    if (key && s.n > 0) o[key] = s.value(r);
  });
  for (const auto& [name, s] : parts)
    if (s.n > 0) o["reward/" + name + "/mean"] = s.value(Reduce::mean);
  return o;
}

const std::vector<MetricDoc>& step_metric_docs() {
  static const std::vector<MetricDoc> docs = {
#define R1_STEP_METRIC_DOC_(member, key, reduce, doc) {key, doc},
      R1_STEP_METRICS(R1_STEP_METRIC_DOC_)
#undef R1_STEP_METRIC_DOC_
  };
  return docs;
}

}  // namespace r1
