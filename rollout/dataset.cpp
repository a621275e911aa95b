#include "rollout/dataset.hpp"

#include <boost/json/serialize.hpp>
#include <fstream>
#include <random>

#include "common/error.hpp"
#include "common/json.hpp"

namespace r1 {

std::string fill_template(const std::string& tmpl, const boost::json::object& record, const std::string& where) {
  std::string out;
  out.reserve(tmpl.size() + 64);
  for (size_t i = 0; i < tmpl.size(); ++i) {
    char c = tmpl[i];
    if (c == '{' && i + 1 < tmpl.size() && tmpl[i + 1] == '{') {
      out += '{', ++i;
    } else if (c == '}' && i + 1 < tmpl.size() && tmpl[i + 1] == '}') {
      out += '}', ++i;
    } else if (c == '{') {
      size_t end = tmpl.find('}', i);
      R1_CHECK(end != std::string::npos, "prompt_template: unclosed '{{' at offset {}", i);
      std::string key = tmpl.substr(i + 1, end - i - 1);
      auto it = record.find(key);
      R1_CHECK(it != record.end(), "{}: prompt_template uses {{{}}} but the record has no field '{}'", where, key, key);
      if (it->value().is_string())
        out += it->value().get_string();
      else
        out += boost::json::serialize(it->value());
      i = end;
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

// A record from one JSONL line: the filled template and the reference fields.
PromptRecord make_record(const std::string& line, const DatasetOptions& o, const std::string& where, int64_t index) {
  auto v = json::parse(line, where);
  R1_CHECK(v.is_object(), "{}: each line must be a JSON object", where);
  PromptRecord r;
  r.index = index;
  r.record = v.get_object();
  r.prompt = fill_template(o.prompt_template, r.record, where);
  for (const auto& f : o.reference_fields) {
    auto it = r.record.find(f);
    R1_CHECK(it != r.record.end(), "{}: reference field '{}' is missing (see [data] reference_fields)", where, f);
    r.reference[f] = it->value();
  }
  return r;
}

// Calls `f(line, where)` for each non-blank line of the file until it returns false.
template <class F>
void for_each_line(const DatasetOptions& o, F f) {
  std::ifstream in(o.path);
  R1_CHECK(in.good(), "dataset {}: cannot open", o.path);
  std::string line;
  for (int64_t lineno = 1; std::getline(in, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (!f(line, o.path + ":" + std::to_string(lineno))) break;
  }
}

}  // namespace

void check_first_record(const DatasetOptions& o) {
  bool any = false;
  for_each_line(o, [&](const std::string& line, const std::string& where) {
    make_record(line, o, where, 0);
    return !(any = true);
  });
  R1_CHECK(any, "dataset {}: no records", o.path);
}

Dataset::Dataset(const DatasetOptions& o, int64_t rank, int64_t world_size)
    : options_(o), rank_(rank), world_size_(world_size) {
  R1_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "dataset: rank {} of world size {}", rank, world_size);
  for_each_line(o, [&](const std::string& line, const std::string& where) {
    records_.push_back(make_record(line, o, where, static_cast<int64_t>(records_.size())));
    return o.limit <= 0 || static_cast<int64_t>(records_.size()) < o.limit;
  });
  R1_CHECK(!records_.empty(), "dataset {}: no records", o.path);
  R1_CHECK(static_cast<int64_t>(records_.size()) >= world_size, "dataset {}: {} records for {} ranks", o.path,
           records_.size(), world_size);
  make_order();
}

void Dataset::make_order() {
  std::vector<size_t> all(records_.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  if (options_.shuffle) {
    std::mt19937_64 g(static_cast<uint64_t>(options_.seed) * 1000003ULL + static_cast<uint64_t>(cursor_.epoch));
    std::shuffle(all.begin(), all.end(), g);
  }
  // Every rank sees the same global order and takes every world_size-th record of it, so the
  // ranks together cover each epoch once whatever their number.
  order_.clear();
  for (size_t i = static_cast<size_t>(rank_); i < all.size(); i += static_cast<size_t>(world_size_))
    order_.push_back(all[i]);
}

const PromptRecord& Dataset::next() {
  if (cursor_.position >= static_cast<int64_t>(order_.size())) {
    ++cursor_.epoch;
    cursor_.position = 0;
    make_order();
  }
  return records_[order_[static_cast<size_t>(cursor_.position++)]];
}

Dataset::Cursor Dataset::cursor_after(int64_t consumed) const {
  R1_CHECK(consumed >= 0, "dataset: cannot skip {} records", consumed);
  const auto per_epoch = static_cast<int64_t>(order_.size());
  return {consumed / per_epoch, consumed % per_epoch};
}

void Dataset::set_cursor(Cursor c) {
  R1_CHECK(c.epoch >= 0 && c.position >= 0, "dataset cursor must be non-negative");
  cursor_ = c;
  make_order();
  R1_CHECK(c.position <= static_cast<int64_t>(order_.size()), "dataset cursor position {} past the epoch ({} records)",
           c.position, order_.size());
}

}  // namespace r1
