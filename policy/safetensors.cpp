#include "policy/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json/serialize.hpp>
#include <cerrno>
#include <cstring>

#include "common/error.hpp"
#include "common/fs.hpp"
#include "common/json.hpp"

namespace fs = std::filesystem;

namespace r1 {

struct SafetensorsReader::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr && addr != MAP_FAILED) ::munmap(addr, size);
  }
};

static const std::vector<std::pair<std::string, at::ScalarType>>& dtype_table() {
  static const std::vector<std::pair<std::string, at::ScalarType>> t = {
      {"F32", at::kFloat}, {"BF16", at::kBFloat16}, {"F16", at::kHalf}, {"F64", at::kDouble}, {"I64", at::kLong},
      {"I32", at::kInt},   {"I16", at::kShort},     {"I8", at::kChar},  {"U8", at::kByte},    {"BOOL", at::kBool}};
  return t;
}

std::string safetensors_dtype(at::ScalarType t) {
  for (const auto& [name, st] : dtype_table())
    if (st == t) return name;
  fail("dtype {} cannot be saved to safetensors", c10::toString(t));
}

at::ScalarType scalar_type_from_safetensors(const std::string& dtype, const std::string& where) {
  for (const auto& [name, st] : dtype_table())
    if (name == dtype) return st;
  fail("{}: unsupported dtype '{}' (supported: F32, BF16, F16, F64, I64, I32, I16, I8, U8, BOOL)", where, dtype);
}

SafetensorsReader::SafetensorsReader(const fs::path& path) {
  fs::path p = path;
  if (fs::is_directory(p)) {
    if (fs::exists(p / "model.safetensors.index.json"))
      p = p / "model.safetensors.index.json";
    else if (fs::exists(p / "model.safetensors"))
      p = p / "model.safetensors";
    else
      fail("{}: no model.safetensors or model.safetensors.index.json in this folder", path.string());
  }
  R1_CHECK(fs::exists(p), "{}: no such file", p.string());
  if (p.extension() == ".json") {
    const boost::json::value index_json = json::parse_file(p);
    json::Object index(index_json, p.string());
    json::Object map = index.object("weight_map");
    std::map<std::string, std::vector<std::string>> by_file;
    for (const auto& kv : map.raw()) {
      R1_CHECK(kv.value().is_string(), "{}: weight_map['{}'] must be a file name", p.string(), std::string(kv.key()));
      by_file[std::string(kv.value().get_string())].push_back(std::string(kv.key()));
    }
    R1_CHECK(!by_file.empty(), "{}: weight_map is empty", p.string());
    for (const auto& [file, names] : by_file) {
      R1_CHECK(file.find('/') == std::string::npos && file != ".." && file != ".",
               "{}: weight_map names file '{}' outside the model folder", p.string(), file);
      size_t before = entries_.size();
      open_file(p.parent_path() / file);
      for (const auto& n : names) {
        auto it = entries_.find(n);
        R1_CHECK(it != entries_.end() && paths_[it->second.file] == p.parent_path() / file,
                 "{}: weight_map puts tensor '{}' in {}, but that file does not hold it", p.string(), n, file);
      }
      R1_CHECK(entries_.size() - before == names.size(), "{}: {} holds {} tensors but weight_map lists {} for it",
               p.string(), file, entries_.size() - before, names.size());
    }
  } else {
    open_file(p);
  }
}

SafetensorsReader::~SafetensorsReader() = default;
SafetensorsReader::SafetensorsReader(SafetensorsReader&&) noexcept = default;

void SafetensorsReader::open_file(const fs::path& file) {
  const std::string f = file.string();
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  R1_CHECK(fd >= 0, "cannot open {}: {}", f, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail("cannot stat {}: {}", f, std::strerror(errno));
  }
  auto m = std::make_shared<Mapping>();
  m->size = static_cast<size_t>(st.st_size);
  if (m->size < 8) {
    ::close(fd);
    fail("{}: file is {} bytes, too short for a safetensors header (truncated?)", f, m->size);
  }
  m->addr = ::mmap(nullptr, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  R1_CHECK(m->addr != MAP_FAILED, "cannot mmap {}: {}", f, std::strerror(errno));

  const auto* bytes = static_cast<const uint8_t*>(m->addr);
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes, 8);  // little-endian on every platform we build for
  R1_CHECK(header_len <= m->size - 8 && header_len <= (uint64_t{100} << 20),
           "{}: header length {} does not fit in a {}-byte file (truncated or not safetensors)", f, header_len,
           m->size);
  const size_t data_start = 8 + header_len;
  const size_t data_size = m->size - data_start;
  auto header = json::parse(std::string_view(reinterpret_cast<const char*>(bytes + 8), header_len), f + " (header)");
  R1_CHECK(header.is_object(), "{}: header is not a JSON object", f);

  const size_t file_index = paths_.size();
  std::vector<std::pair<size_t, size_t>> ranges;
  for (const auto& kv : header.get_object()) {
    std::string name(kv.key());
    if (name == "__metadata__") continue;
    std::string where = fmt::format("{}: tensor '{}'", f, name);
    json::Object e(kv.value(), where);
    TensorEntry t;
    t.dtype = e.string("dtype");
    t.file = file_index;
    at::ScalarType st_type = scalar_type_from_safetensors(t.dtype, where);
    const auto& shape = e.at("shape");
    R1_CHECK(shape.is_array(), "{}: shape must be an array", where);
    uint64_t numel = 1;
    for (const auto& d : shape.get_array()) {
      R1_CHECK(d.is_int64() && d.get_int64() >= 0, "{}: shape entries must be non-negative integers", where);
      t.shape.push_back(d.get_int64());
      numel *= static_cast<uint64_t>(d.get_int64());
    }
    auto offs = e.integers("data_offsets");
    R1_CHECK(offs.size() == 2 && offs[0] >= 0 && offs[0] <= offs[1], "{}: data_offsets must be [begin, end]", where);
    t.begin = static_cast<size_t>(offs[0]);
    t.end = static_cast<size_t>(offs[1]);
    R1_CHECK(t.end <= data_size, "{}: bytes [{}, {}) run past the end of the data ({} bytes): the file is truncated",
             where, t.begin, t.end, data_size);
    uint64_t want = numel * c10::elementSize(st_type);
    R1_CHECK(t.end - t.begin == want, "{}: {} bytes stored but shape and dtype need {}", where, t.end - t.begin, want);
    R1_CHECK(!entries_.count(name), "{}: tensor also appears in {}", where, paths_[entries_[name].file].string());
    ranges.emplace_back(t.begin, t.end);
    entries_.emplace(std::move(name), std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    R1_CHECK(ranges[i].first >= ranges[i - 1].second, "{}: tensors overlap in the data section (corrupt file)", f);

  // Entries store offsets relative to the data section; remember where it starts via the mapping.
  paths_.push_back(file);
  maps_.push_back(m);
  for (auto& [n, t] : entries_)
    if (t.file == file_index) t.begin += data_start, t.end += data_start;
}

at::Tensor SafetensorsReader::get(const std::string& name) const {
  auto it = entries_.find(name);
  R1_CHECK(it != entries_.end(), "tensor '{}' is not in {}", name, paths_.empty() ? "" : paths_[0].string());
  const TensorEntry& t = it->second;
  auto m = maps_[t.file];
  auto type = scalar_type_from_safetensors(t.dtype, name);
  void* ptr = static_cast<uint8_t*>(m->addr) + t.begin;
  if (t.begin == t.end)  // empty tensor
    return at::empty(t.shape, at::TensorOptions().dtype(type));
  // Mapped read-only: callers copy before writing. Unaligned data (odd header padding) is copied.
  if (reinterpret_cast<uintptr_t>(ptr) % c10::elementSize(type) != 0) {
    at::Tensor out = at::empty(t.shape, at::TensorOptions().dtype(type));
    std::memcpy(out.data_ptr(), ptr, t.end - t.begin);
    return out;
  }
  return at::from_blob(
      ptr, t.shape, [m](void*) {}, at::TensorOptions().dtype(type));
}

void SafetensorsReader::release(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) return;
  const TensorEntry& t = it->second;
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto base = reinterpret_cast<uintptr_t>(maps_[t.file]->addr);
  const uintptr_t begin = (base + t.begin + page - 1) / page * page, end = (base + t.end) / page * page;
  if (end > begin)
    ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);  // a hint: failure is harmless
}

std::string SafetensorsReader::where(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) return fmt::format("tensor '{}'", name);
  return fmt::format("tensor '{}' in {}", name, paths_[it->second.file].string());
}

// ---- Writing ----

static void write_all(int fd, const void* data, size_t n, const std::string& f) {
  const char* p = static_cast<const char*>(data);
  while (n) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    R1_CHECK(w > 0, "write to {} failed: {} (disk full?)", f, std::strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

static void write_one(const fs::path& file, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  boost::json::object header;
  if (!metadata.empty()) {
    boost::json::object meta;
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::vector<at::Tensor> cpu;
  size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    boost::json::array shape;
    for (auto d : c.sizes()) shape.push_back(d);
    size_t nbytes = c.numel() * c.element_size();
    header[name] = boost::json::object{{"dtype", safetensors_dtype(c.scalar_type())},
                                       {"shape", std::move(shape)},
                                       {"data_offsets", boost::json::array{offset, offset + nbytes}}};
    offset += nbytes;
    cpu.push_back(std::move(c));
  }
  std::string h = boost::json::serialize(header);
  while (h.size() % 8) h += ' ';  // the data section starts 8-byte aligned
  uint64_t len = h.size();

  fs::path tmp = file.parent_path() / ("." + file.filename().string() + ".tmp");
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  R1_CHECK(fd >= 0, "cannot create {}: {}", tmp.string(), std::strerror(errno));
  try {
    write_all(fd, &len, 8, tmp.string());
    write_all(fd, h.data(), h.size(), tmp.string());
    for (const auto& c : cpu) write_all(fd, c.data_ptr(), c.numel() * c.element_size(), tmp.string());
    R1_CHECK(::fsync(fd) == 0, "fsync {} failed: {}", tmp.string(), std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  R1_CHECK(::rename(tmp.c_str(), file.c_str()) == 0, "rename {} failed: {}", tmp.string(), std::strerror(errno));
}

void save_safetensors(const fs::path& dir, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const SafetensorsSaveOptions& options) {
  R1_CHECK(fs::is_directory(dir), "save_safetensors: {} is not a folder", dir.string());
  auto sorted = tensors;
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::vector<std::pair<std::string, at::Tensor>>> shards(1);
  int64_t shard_bytes = 0, total = 0;
  for (auto& nt : sorted) {
    int64_t n = nt.second.numel() * nt.second.element_size();
    if (shard_bytes > 0 && shard_bytes + n > options.max_shard_bytes) shards.emplace_back(), shard_bytes = 0;
    shards.back().push_back(nt);
    shard_bytes += n;
    total += n;
  }
  if (shards.size() == 1) {
    write_one(dir / (options.file_stem + ".safetensors"), shards[0], options.metadata);
  } else {
    boost::json::object weight_map;
    for (size_t i = 0; i < shards.size(); ++i) {
      std::string name = fmt::format("{}-{:05d}-of-{:05d}.safetensors", options.file_stem, i + 1, shards.size());
      write_one(dir / name, shards[i], options.metadata);
      for (const auto& [n, t] : shards[i]) weight_map[n] = name;
    }
    boost::json::object index{{"metadata", boost::json::object{{"total_size", total}}},
                              {"weight_map", std::move(weight_map)}};
    write_file_atomic(dir / (options.file_stem + ".safetensors.index.json"), boost::json::serialize(index) + "\n");
  }
  fsync_path(dir);
}

}  // namespace r1
