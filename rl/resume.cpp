#include "rl/resume.hpp"

#include <fmt/ranges.h>

#include <algorithm>
#include <numeric>
#include <sstream>

#include "common/error.hpp"

namespace r1 {

std::mt19937_64 fresh_shuffle_rng(uint64_t seed) { return std::mt19937_64(seed ^ 0x5eedULL); }

ResumePoint plan_resume(const std::filesystem::path& run_dir, int64_t rank, int64_t world, int64_t n, uint64_t seed,
                        std::optional<int64_t> at_most) {
  std::vector<std::string> skipped;
  std::optional<FoundCheckpoint> found = find_checkpoint(run_dir, &skipped, at_most);
  for (const auto& why : skipped) fmt::print(stderr, "r1 train: skipping checkpoint {}\n", why);
  R1_CHECK(found.has_value(), "{}: no good checkpoint{} to resume from{}", run_dir.string(),
           at_most ? fmt::format(" after at most {} steps", *at_most) : "",
           skipped.empty() ? " (none was written: set [train] save_every to write them)" : " (see the reasons above)");
  ResumePoint p{*found, 0, fresh_shuffle_rng(seed)};
  const TrainerState& st = found->state;
  if (st.world_size == world) {  // every rank continues its own cursor: exact
    p.consumed = st.records_by_rank[rank];
    std::istringstream(st.shuffle_rng) >> p.shuffle_rng;
    return p;
  }
  const int64_t total = std::accumulate(st.records_by_rank.begin(), st.records_by_rank.end(), int64_t{0});
  const bool even = std::all_of(st.records_by_rank.begin(), st.records_by_rank.end(),
                                [&](int64_t c) { return c == st.records_by_rank[0]; });
  R1_CHECK(even && total % world == 0 && n % world == 0 && n % st.world_size == 0,
           "resume: the checkpoint was written by {} rank(s) that drew {} records; {} ranks can continue it only "
           "when every rank drew the same number (no dynamic sampling) and both the records drawn ({}) and the "
           "dataset's records ({}) divide by both rank counts",
           st.world_size, fmt::join(st.records_by_rank, "/"), world, total, n);
  p.consumed = total / world;
  p.shuffle_rng.seed(seed ^ 0x5eedULL ^ static_cast<uint64_t>(st.step));
  return p;
}

}  // namespace r1
