// Prompt datasets: JSONL records, a prompt template whose {placeholders} are filled from each
// record, the record's reference fields passed on to the rewards, seeded shuffling per epoch, and
// sharding by rank. The cursor (epoch, position) is all the state a resume needs.
#pragma once
#include <boost/json/object.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "rollout/options.hpp"

namespace r1 {

struct PromptRecord {
  int64_t index = 0;              // line-order index in the file (stable id, also the sampling stream)
  std::string prompt;             // the filled template
  boost::json::object reference;  // the reference fields
  boost::json::object record;     // the whole record
};

// Fills `tmpl` from `record`; throws naming the placeholder and `where` when a field is missing.
std::string fill_template(const std::string& tmpl, const boost::json::object& record, const std::string& where);

// Reads the first record of o.path and fills the template and the reference fields from it, as
// the dataset will; throws r1::Error naming the file, line and field when it cannot.
void check_first_record(const DatasetOptions& o);

class Dataset {
 public:
  explicit Dataset(const DatasetOptions& options, int64_t rank = 0, int64_t world_size = 1);

  size_t size() const { return records_.size(); }  // records in the whole file (after limit)
  const PromptRecord& at(size_t i) const { return records_.at(i); }

  // The next record for this rank: epochs go on forever, each shuffled with (seed, epoch).
  const PromptRecord& next();

  struct Cursor {
    int64_t epoch = 0;
    int64_t position = 0;  // into this epoch's order
  };
  Cursor cursor() const { return cursor_; }
  void set_cursor(Cursor c);
  // The cursor after `consumed` calls to next() from the start (epochs have a fixed length per rank).
  Cursor cursor_after(int64_t consumed) const;

 private:
  void make_order();
  DatasetOptions options_;
  int64_t rank_, world_size_;
  std::vector<PromptRecord> records_;
  std::vector<size_t> order_;  // this rank's records in this epoch's order
  Cursor cursor_;
};

}  // namespace r1
