#include "metrics/tensorboard.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <boost/crc.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "common/error.hpp"
#include "common/fs.hpp"
#include "metrics/jsonl.hpp"
#include "metrics/tensorboard.pb.h"

namespace fs = std::filesystem;
namespace bj = boost::json;

namespace r1::metrics::tensorboard {

namespace {

using Crc32c = boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true>;

uint32_t masked_crc(const void* data, size_t n) {
  Crc32c crc;
  crc.process_bytes(data, n);
  const uint32_t c = crc.checksum();
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t get_le(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

void to_proto(const Value& v, ::tensorboard::Summary::Value* out) {
  out->set_tag(v.tag);
  if (v.kind == Value::Kind::scalar) {
    out->set_simple_value(static_cast<float>(v.scalar));
    return;
  }
  out->mutable_metadata()->mutable_plugin_data()->set_plugin_name("text");
  ::tensorboard::TensorProto* t = out->mutable_tensor();
  t->set_dtype(::tensorboard::DT_STRING);
  t->mutable_tensor_shape();  // a scalar string
  t->add_string_val(v.text);
}

std::optional<Value> from_proto(const ::tensorboard::Summary::Value& v) {
  Value out{.tag = v.tag()};
  if (v.value_case() == ::tensorboard::Summary::Value::kSimpleValue) {
    out.scalar = v.simple_value();
    return out;
  }
  if (v.value_case() != ::tensorboard::Summary::Value::kTensor) return std::nullopt;
  const auto& t = v.tensor();
  if (t.dtype() == ::tensorboard::DT_STRING && t.string_val_size() >= 1) {
    out.kind = Value::Kind::text;
    out.text = t.string_val(0);
    return out;
  }
  if (t.dtype() == ::tensorboard::DT_FLOAT && t.float_val_size() == 1) {
    out.scalar = t.float_val(0);
    return out;
  }
  if (t.dtype() == ::tensorboard::DT_FLOAT && t.tensor_content().size() == sizeof(float)) {
    float f;
    std::memcpy(&f, t.tensor_content().data(), sizeof f);
    out.scalar = f;
    return out;
  }
  if (t.dtype() == ::tensorboard::DT_DOUBLE && t.double_val_size() == 1) {
    out.scalar = t.double_val(0);
    return out;
  }
  return std::nullopt;
}

Event from_proto(const ::tensorboard::Event& e) {
  Event out{.wall_time = e.wall_time(), .step = e.step(), .file_version = e.file_version()};
  if (e.has_summary())
    for (const auto& v : e.summary().value())
      if (auto x = from_proto(v)) out.values.push_back(std::move(*x));
  return out;
}

int open_append(const fs::path& file) {
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  R1_CHECK(fd >= 0, "cannot open {} for appending: {}", file.string(), std::strerror(errno));
  return fd;
}

// A fenced markdown code block holding `text` (a fence inside it is broken up).
std::string code_block(std::string text) {
  for (size_t at = text.find("```"); at != std::string::npos; at = text.find("```", at + 2)) text.insert(at + 1, " ");
  return "```\n" + text + "\n```\n";
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == 0) return "localhost";
  std::string h = buf;
  std::replace(h.begin(), h.end(), '/', '_');
  return h;
}

}  // namespace

std::string encode_record(const Event& e) {
  ::tensorboard::Event pe;
  pe.set_wall_time(e.wall_time);
  pe.set_step(e.step);
  if (!e.file_version.empty()) pe.set_file_version(e.file_version);
  if (!e.values.empty())
    for (const auto& v : e.values) to_proto(v, pe.mutable_summary()->add_value());
  std::string data;
  R1_CHECK(pe.SerializeToString(&data), "cannot encode a TensorBoard event of step {}", e.step);
  std::string out, len;
  put_le(len, data.size(), 8);
  out += len;
  put_le(out, masked_crc(len.data(), len.size()), 4);
  out += data;
  put_le(out, masked_crc(data.data(), data.size()), 4);
  return out;
}

EventWriter EventWriter::create(const fs::path& dir, double wall_time) {
  static std::atomic<int> counter{0};
  const std::string name = fmt::format("events.out.tfevents.{}.{}.{}.{}", static_cast<int64_t>(wall_time), host_name(),
                                       ::getpid(), counter++);
  EventWriter w(dir / name);
  w.write(Event{.wall_time = wall_time, .step = 0, .file_version = kFileVersion});
  return w;
}

EventWriter::EventWriter(const fs::path& file) : file_(file), fd_(open_append(file)) {}

EventWriter::~EventWriter() {
  if (fd_ >= 0) ::close(fd_);
}

EventWriter::EventWriter(EventWriter&& o) noexcept : file_(std::move(o.file_)), fd_(o.fd_) { o.fd_ = -1; }

EventWriter& EventWriter::operator=(EventWriter&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    file_ = std::move(o.file_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

void EventWriter::write(const Event& e) { write(std::vector<Event>{e}); }

void EventWriter::write(const std::vector<Event>& events) {
  std::string text;
  for (const auto& e : events) text += encode_record(e);
  write_all(fd_, text, file_);
}

void EventWriter::sync() {
  R1_CHECK(fd_ >= 0 && ::fsync(fd_) == 0, "fsync {} failed: {}", file_.string(), std::strerror(errno));
}

EventFile read_events(const fs::path& file) {
  EventFile out{.file = file};
  const std::string bytes = read_file(file);
  size_t at = 0;
  while (at < bytes.size()) {
    if (bytes.size() - at < 12) {
      out.warnings.push_back(fmt::format("{}: skipped a torn last record at byte {}", file.string(), at));
      break;
    }
    const uint64_t len = get_le(bytes.data() + at, 8);
    R1_CHECK(get_le(bytes.data() + at + 8, 4) == masked_crc(bytes.data() + at, 8),
             "{}: byte {}: the record length fails its checksum (not an event file, or damaged)", file.string(), at);
    if (bytes.size() - at - 12 < len + 4) {
      out.warnings.push_back(fmt::format("{}: skipped a torn last record at byte {}", file.string(), at));
      break;
    }
    const char* data = bytes.data() + at + 12;
    R1_CHECK(get_le(data + len, 4) == masked_crc(data, len), "{}: byte {}: the record fails its checksum",
             file.string(), at);
    ::tensorboard::Event e;
    R1_CHECK(e.ParseFromArray(data, static_cast<int>(len)), "{}: byte {}: the record is not an Event", file.string(),
             at);
    out.events.push_back(from_proto(e));
    at += 12 + len + 4;
  }
  return out;
}

std::vector<fs::path> event_files(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().filename().string().rfind("events.out.tfevents.", 0) == 0)
      out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

Event scalars_event(const bj::object& line) {
  Event e;
  for (const auto& kv : line) {
    if (kv.key() == "step") {
      e.step = kv.value().to_number<int64_t>();
    } else if (kv.key() == "time") {
      if (auto t = jsonl::number(kv.value())) e.wall_time = *t;
    } else if (auto v = jsonl::number(kv.value()); v && std::isfinite(*v)) {
      e.values.push_back({.kind = Value::Kind::scalar, .tag = std::string(kv.key()), .scalar = *v});
    }
  }
  return e;
}

Event samples_event(int64_t step, double wall_time, const bj::array& samples, size_t k) {
  std::string md;
  for (size_t i = 0; i < samples.size() && i < k; ++i) {
    if (!samples[i].is_object()) continue;
    const bj::object& s = samples[i].get_object();
    auto num = [&](const char* key) { return s.if_contains(key) ? jsonl::number(s.at(key)).value_or(0) : 0.0; };
    md += fmt::format("**group {}, sample {}**: reward {:.4g}", num("group"), num("sample"), num("reward"));
    if (const bj::value* parts = s.if_contains("parts"); parts && parts->is_object()) {
      std::string p;
      for (const auto& kv : parts->get_object())
        p += fmt::format("{}{} {:.4g}", p.empty() ? "" : ", ", std::string(kv.key()),
                         jsonl::number(kv.value()).value_or(0));
      md += " (" + p + ")";
    }
    md += "\n\n";
    if (const bj::value* c = s.if_contains("completion"); c && c->is_string())
      md += code_block(std::string(c->get_string()));
    md += "\n";
  }
  return Event{
      .wall_time = wall_time, .step = step, .values = {{.kind = Value::Kind::text, .tag = "samples", .text = md}}};
}

Event config_event(double wall_time, const std::string& toml) {
  return Event{.wall_time = wall_time,
               .step = 0,
               .values = {{.kind = Value::Kind::text, .tag = "config", .text = code_block(toml)}}};
}

}  // namespace r1::metrics::tensorboard
