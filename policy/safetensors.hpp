// safetensors I/O. Reading memory-maps single or sharded (model.safetensors.index.json) files and
// validates every header entry against the file before any tensor is touched, so a truncated or
// corrupt file is an error naming the file and tensor, never a crash. Writing is atomic.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace r1 {

struct TensorEntry {
  std::string dtype;  // safetensors dtype: F32, BF16, F16, F64, I64, I32, I16, I8, U8, BOOL
  std::vector<int64_t> shape;
  size_t begin = 0, end = 0;  // byte range inside the file's data section
  size_t file = 0;            // index into SafetensorsReader::files()
};

class SafetensorsReader {
 public:
  // `path` is a .safetensors file, an index.json, or a model folder holding either.
  explicit SafetensorsReader(const std::filesystem::path& path);
  ~SafetensorsReader();
  SafetensorsReader(SafetensorsReader&&) noexcept;

  const std::map<std::string, TensorEntry>& entries() const { return entries_; }
  const std::vector<std::filesystem::path>& files() const { return paths_; }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }

  // A CPU tensor viewing the mapped bytes (zero copy; keeps the mapping alive). Copy or convert it
  // before writing to it.
  at::Tensor get(const std::string& name) const;
  std::string where(const std::string& name) const;  // "tensor 'x' in file y"
  // Drops the tensor's mapped pages from this process's memory once it has been copied out (they
  // stay in the page cache; a later get() reads them again). Loading a model then holds its
  // weights once, not twice.
  void release(const std::string& name) const;

 private:
  struct Mapping;
  void open_file(const std::filesystem::path& file);
  std::vector<std::filesystem::path> paths_;
  std::vector<std::shared_ptr<Mapping>> maps_;
  std::map<std::string, TensorEntry> entries_;
};

struct SafetensorsSaveOptions {
  // Split into model-0000i-of-0000N.safetensors + model.safetensors.index.json above this size.
  int64_t max_shard_bytes = int64_t{5} << 30;
  std::map<std::string, std::string> metadata = {{"format", "pt"}};
  std::string file_stem = "model";  // file names: <stem>.safetensors, <stem>-0000i-of-0000N.safetensors
};

// Writes `tensors` into `dir` (which must exist) as <stem>.safetensors or shards with an index.
// Each file is written to a temp name, fsynced, then renamed.
void save_safetensors(const std::filesystem::path& dir, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const SafetensorsSaveOptions& options = {});

// The safetensors dtype name for a ScalarType ("F32", ...) and back; errors name the tensor.
std::string safetensors_dtype(at::ScalarType t);
at::ScalarType scalar_type_from_safetensors(const std::string& dtype, const std::string& where);

}  // namespace r1
