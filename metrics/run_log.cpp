#include "metrics/run_log.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json/parse.hpp>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>

#include "common/error.hpp"
#include "common/fs.hpp"
#include "common/json.hpp"
#include "metrics/jsonl.hpp"
#include "metrics/tensorboard.hpp"

namespace fs = std::filesystem;
namespace bj = boost::json;

namespace r1::metrics {

namespace {

// Cuts a final line without its newline (a write interrupted by a crash) so the next append starts
// on a fresh line. Returns the number of bytes cut.
size_t cut_torn_tail(int fd, const fs::path& file) {
  struct stat st {};
  R1_CHECK(::fstat(fd, &st) == 0, "cannot stat {}: {}", file.string(), std::strerror(errno));
  off_t size = st.st_size;
  if (size == 0) return 0;
  // Scan backwards in blocks for the last newline.
  char buf[4096];
  off_t end = size;
  bool last_byte = true;
  while (end > 0) {
    off_t begin = end > static_cast<off_t>(sizeof buf) ? end - static_cast<off_t>(sizeof buf) : 0;
    ssize_t n = ::pread(fd, buf, static_cast<size_t>(end - begin), begin);
    R1_CHECK(n == end - begin, "cannot read {}: {}", file.string(), std::strerror(errno));
    for (ssize_t i = n - 1; i >= 0; --i) {
      if (buf[i] == '\n') {
        if (last_byte) return 0;  // the file ends with a complete line
        off_t keep = begin + i + 1;
        R1_CHECK(::ftruncate(fd, keep) == 0, "cannot truncate {}: {}", file.string(), std::strerror(errno));
        return static_cast<size_t>(size - keep);
      }
      last_byte = false;
    }
    end = begin;
  }
  R1_CHECK(::ftruncate(fd, 0) == 0, "cannot truncate {}: {}", file.string(), std::strerror(errno));
  return static_cast<size_t>(size);
}

int open_append(const fs::path& file) {
  int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  R1_CHECK(fd >= 0, "cannot open {} for appending: {} (is the run directory writable?)", file.string(),
           std::strerror(errno));
  return fd;
}

// The step of a log line, or nullopt when it is not a JSON object with an integer "step".
std::optional<int64_t> line_step(std::string_view line) {
  if (auto s = jsonl::fast_step(line)) return s;
  boost::system::error_code ec;
  bj::value v = bj::parse(line, ec);
  if (ec || !v.is_object()) return std::nullopt;
  auto* s = v.get_object().if_contains("step");
  if (!s || !(s->is_int64() || s->is_uint64())) return std::nullopt;
  return s->is_int64() ? s->get_int64() : static_cast<int64_t>(s->get_uint64());
}

double unix_now() {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
                .count();
  return static_cast<double>(ms) / 1000.0;
}

}  // namespace

RunLog::RunLog(const fs::path& run_dir, RunLogOptions options) : dir_(run_dir), options_(options) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  R1_CHECK(!ec, "cannot create run directory {}: {}", dir_.string(), ec.message());
  open_files();
  if (options_.tensorboard)
    tensorboard_ = std::make_unique<tensorboard::EventWriter>(tensorboard::EventWriter::create(dir_, unix_now()));
}

RunLog::~RunLog() { close_files(); }

RunLog::RunLog(RunLog&& other) noexcept
    : dir_(std::move(other.dir_)),
      options_(other.options_),
      metrics_fd_(other.metrics_fd_),
      samples_fd_(other.samples_fd_),
      events_fd_(other.events_fd_),
      tensorboard_(std::move(other.tensorboard_)),
      warnings_(std::move(other.warnings_)) {
  other.metrics_fd_ = other.samples_fd_ = other.events_fd_ = -1;
}

RunLog& RunLog::operator=(RunLog&& other) noexcept {
  if (this != &other) {
    close_files();
    dir_ = std::move(other.dir_);
    options_ = other.options_;
    warnings_ = std::move(other.warnings_);
    metrics_fd_ = other.metrics_fd_;
    samples_fd_ = other.samples_fd_;
    events_fd_ = other.events_fd_;
    tensorboard_ = std::move(other.tensorboard_);
    other.metrics_fd_ = other.samples_fd_ = other.events_fd_ = -1;
  }
  return *this;
}

void RunLog::open_files() {
  const fs::path mfile = dir_ / kMetricsFile, sfile = dir_ / kSamplesFile;
  metrics_fd_ = open_append(mfile);
  // The lock guards the whole run directory: one writer at a time. It is released on close.
  if (::flock(metrics_fd_, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    close_files();
    if (err == EWOULDBLOCK)
      fail(
          "{}: another process is already writing this run directory (a second trainer, or a rank other "
          "than 0, opened its log); give this run its own directory",
          mfile.string());
    fail("cannot lock {}: {}", mfile.string(), std::strerror(err));
  }
  samples_fd_ = open_append(sfile);
  const fs::path efile = dir_ / kEventsFile;
  events_fd_ = open_append(efile);
  for (auto [fd, file] : {std::pair{metrics_fd_, mfile}, std::pair{samples_fd_, sfile}, std::pair{events_fd_, efile}}) {
    if (size_t cut = cut_torn_tail(fd, file))
      warnings_.push_back(
          fmt::format("{}: cut off a torn last line ({} bytes) left by an interrupted write", file.string(), cut));
  }
}

void RunLog::close_files() {
  for (int* fd : {&metrics_fd_, &samples_fd_, &events_fd_}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
}

void RunLog::append(int fd, const fs::path& file, const std::string& text) {
  R1_CHECK(fd >= 0, "{}: the run log is closed", file.string());
  write_all(fd, text, file);
}

void RunLog::log_step(const bj::object& metrics) {
  const fs::path file = dir_ / kMetricsFile;
  const bj::value* step = metrics.if_contains("step");
  R1_CHECK(step && (step->is_int64() || step->is_uint64()),
           "RunLog::log_step({}): the metrics need an integer \"step\" (got {})", file.string(),
           step ? json::kind_name(*step) : "none");
  bj::object line;
  line["step"] = *step;
  const bj::value* time = metrics.if_contains("time");
  line["time"] = time && time->is_number() ? *time : bj::value(unix_now());
  for (const auto& kv : metrics) {
    if (kv.key() == "step" || kv.key() == "time") continue;
    if (kv.value().is_object() || kv.value().is_array())
      fail(
          "RunLog::log_step: metric '{}' at step {} is a JSON {}: metrics are flat, name each value "
          "'{}/<part>'",
          std::string(kv.key()), jsonl::number(*step).value_or(0), json::kind_name(kv.value()), std::string(kv.key()));
    line[kv.key()] = kv.value();
  }
  std::string text;
  jsonl::append(line, text);
  text += '\n';
  append(metrics_fd_, file, text);
  if (tensorboard_) tensorboard_->write(tensorboard::scalars_event(line));
}

void RunLog::log_event(const bj::object& event) {
  const fs::path file = dir_ / kEventsFile;
  const bj::value* step = event.if_contains("step");
  R1_CHECK(step && (step->is_int64() || step->is_uint64()),
           "RunLog::log_event({}): the event needs an integer \"step\"", file.string());
  bj::object line{{"step", *step}, {"time", unix_now()}};
  for (const auto& kv : event)
    if (kv.key() != "step" && kv.key() != "time") line[kv.key()] = kv.value();
  std::string text;
  jsonl::append(line, text);
  text += '\n';
  append(events_fd_, file, text);
}

void RunLog::log_config(const std::string& toml) {
  if (tensorboard_) tensorboard_->write(tensorboard::config_event(unix_now(), toml));
}

void RunLog::log_samples(int64_t step, const bj::array& samples) {
  const fs::path file = dir_ / kSamplesFile;
  std::string text;
  for (size_t i = 0; i < samples.size(); ++i) {
    R1_CHECK(samples[i].is_object(), "RunLog::log_samples: sample {} of step {} is a JSON {}, expected an object", i,
             step, json::kind_name(samples[i]));
    bj::object line;
    line["step"] = step;
    for (const auto& kv : samples[i].get_object())
      if (kv.key() != "step") line[kv.key()] = kv.value();
    jsonl::append(line, text);
    text += '\n';
  }
  append(samples_fd_, file, text);  // one write for the whole step
  if (tensorboard_ && options_.tensorboard_samples > 0)
    tensorboard_->write(tensorboard::samples_event(step, unix_now(), samples, options_.tensorboard_samples));
}

void RunLog::truncate_after(int64_t step) {
  bool rewritten = false;
  for (auto [fd, name] : {std::pair{metrics_fd_, kMetricsFile}, std::pair{samples_fd_, kSamplesFile}}) {
    const fs::path file = dir_ / name;
    const std::string text = read_file(file);
    std::string kept;
    bool dropped = false, prefix = true;  // prefix: the kept lines are the file's first bytes (usual)
    for (const auto& l : jsonl::split(text)) {
      auto s = line_step(l.text);
      if (!s) {
        if (!l.terminated) continue;  // a torn last line goes too
        fail("{}:{}: not a log line with an integer \"step\"; fix or delete that line, then resume again",
             file.string(), l.number);
      }
      if (*s > step) {
        dropped = true;
        continue;
      }
      if (dropped || l.offset != kept.size()) prefix = false;
      kept.append(l.text);
      kept += '\n';
    }
    if (kept.size() == text.size()) continue;  // nothing to drop
    if (prefix) {
      // Cut the tail in place, on the descriptor that holds the lock.
      R1_CHECK(::ftruncate(fd, static_cast<off_t>(kept.size())) == 0, "cannot truncate {}: {}", file.string(),
               std::strerror(errno));
      R1_CHECK(::fsync(fd) == 0, "fsync {} failed: {}", file.string(), std::strerror(errno));
    } else {
      write_file_atomic(file, kept);
      rewritten = true;
    }
  }
  if (rewritten) {  // the descriptors point at the replaced files
    close_files();
    open_files();
  }
}

void RunLog::sync() {
  for (auto [fd, name] :
       {std::pair{metrics_fd_, kMetricsFile}, std::pair{samples_fd_, kSamplesFile}, std::pair{events_fd_, kEventsFile}})
    R1_CHECK(fd >= 0 && ::fsync(fd) == 0, "fsync {} failed: {}", (dir_ / name).string(), std::strerror(errno));
  if (tensorboard_) tensorboard_->sync();
}

}  // namespace r1::metrics
