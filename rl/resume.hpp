// Where a resumed run continues: the newest good checkpoint of its run directory, and this rank's
// position in the data and the minibatch shuffler's state. With the same number of ranks every
// rank continues its own cursor exactly. With another number, the records drawn so far are a
// prefix of the global order when every rank drew the same number and epochs split evenly; rank r
// then continues at global position consumed * world + r, and the shuffler is reseeded from the
// step (the same for any world size).
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <random>

#include "rl/checkpoint.hpp"

namespace r1 {

struct ResumePoint {
  FoundCheckpoint checkpoint;
  int64_t consumed = 0;  // dataset records this rank has drawn
  std::mt19937_64 shuffle_rng;
};

// Finds the checkpoint (each one skipped, and each interrupted save removed, is reported on
// stderr) and this rank's cursor; throws r1::Error when there is nothing to resume from. With
// `at_most`, the newest checkpoint taken after at most that many steps (a rollback).
ResumePoint plan_resume(const std::filesystem::path& run_dir, int64_t rank, int64_t world, int64_t dataset_records,
                        uint64_t seed, std::optional<int64_t> at_most = std::nullopt);

// The minibatch shuffler of a fresh run.
std::mt19937_64 fresh_shuffle_rng(uint64_t seed);

}  // namespace r1
