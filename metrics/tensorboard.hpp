// TensorBoard event files: the writer behind [run] tensorboard (RunLog feeds it) and r1's own reader.
//
// A file is a sequence of TFRecords, each `uint64 length, uint32 masked CRC-32C of the length,
// length bytes of a serialized tensorboard.Event, uint32 masked CRC-32C of those bytes` (little
// endian; mask: ((crc >> 15) | (crc << 17)) + 0xa282ead8). The Event messages are encoded by
// libprotobuf from metrics/tensorboard.proto, which mirrors TensorBoard's own field numbers, and the
// checksums are Boost.CRC's CRC-32C. The first event of a file holds file_version "brain.Event:2".
// Scalars are simple_value floats (what TensorBoard's scalar dashboard reads); texts are string
// tensors of the "text" plugin, shown as markdown.
#pragma once
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace r1::metrics::tensorboard {

struct Value {
  enum class Kind { scalar, text } kind = Kind::scalar;
  std::string tag;
  double scalar = 0;  // stored as a float (TensorBoard's simple_value)
  std::string text;   // markdown
};

struct Event {
  double wall_time = 0;  // unix seconds
  int64_t step = 0;
  std::string file_version;  // set only in a file's first event
  std::vector<Value> values;
};

inline constexpr const char* kFileVersion = "brain.Event:2";

// Appends events to one file, each with a single write(2) on an O_APPEND descriptor (a crash loses
// at most the record being written; the reader skips such a torn tail).
class EventWriter {
 public:
  // A new file dir/events.out.tfevents.<seconds>.<host>.<pid>.<n>, starting with the file_version event.
  static EventWriter create(const std::filesystem::path& dir, double wall_time);
  // Appends to `file` as it is (tests and re-encoding).
  explicit EventWriter(const std::filesystem::path& file);
  ~EventWriter();
  EventWriter(EventWriter&& o) noexcept;
  EventWriter& operator=(EventWriter&& o) noexcept;
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  void write(const Event& e);
  void write(const std::vector<Event>& events);  // one write for all
  void sync();                                   // fsync
  const std::filesystem::path& file() const { return file_; }

 private:
  std::filesystem::path file_;
  int fd_ = -1;
};

// The bytes of one record framing `e`.
std::string encode_record(const Event& e);

struct EventFile {
  std::filesystem::path file;
  std::vector<Event> events;
  std::vector<std::string> warnings;  // a torn last record
};

// Every event of an event file, in order. A length or checksum that does not match is an r1::Error
// naming the file and byte offset; a record cut short at the end of the file is skipped with a
// warning. Values other than scalars and texts (images, histograms) are skipped; scalars written as
// one-element float tensors (TensorFlow 2's summaries) read as scalars.
EventFile read_events(const std::filesystem::path& file);

// The event files of a run directory, in name order (oldest first: the names start with the time).
std::vector<std::filesystem::path> event_files(const std::filesystem::path& dir);

// The event of a metrics.jsonl line: every finite number (and boolean, as 0/1) is a scalar tagged
// with its key; "step" and "time" become the event's step and wall time.
Event scalars_event(const boost::json::object& line);

// A text event: the first `k` samples of a step as a markdown table (reward, parts, the completion).
Event samples_event(int64_t step, double wall_time, const boost::json::array& samples, size_t k);

// A text event of the run config (TOML in a code block), at step 0.
Event config_event(double wall_time, const std::string& toml);

}  // namespace r1::metrics::tensorboard
