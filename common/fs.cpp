#include "common/fs.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>

#include "common/error.hpp"

namespace fs = std::filesystem;

namespace r1 {

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  R1_CHECK(in.good(), "cannot open {}: {}", path.string(), std::strerror(errno));
  std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  R1_CHECK(!in.bad(), "error reading {}", path.string());
  return out;
}

void fsync_path(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  R1_CHECK(fd >= 0, "cannot open {} to fsync: {}", path.string(), std::strerror(errno));
  int rc = ::fsync(fd);
  ::close(fd);
  R1_CHECK(rc == 0, "fsync {} failed: {}", path.string(), std::strerror(errno));
}

void write_all(int fd, std::string_view data, const fs::path& file) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    R1_CHECK(n > 0, "write to {} failed: {} (disk full?)", file.string(), std::strerror(errno));
    off += static_cast<size_t>(n);
  }
}

void write_file_atomic(const fs::path& path, std::string_view data) {
  fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  fs::path tmp = dir / fmt::format(".{}.tmp{}", path.filename().string(), std::random_device{}());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  R1_CHECK(fd >= 0, "cannot create {}: {} (is the folder writable?)", tmp.string(), std::strerror(errno));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      fail("write to {} failed: {} (disk full?)", tmp.string(), std::strerror(err));
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    fail("fsync/close of {} failed: {}", tmp.string(), std::strerror(errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    fail("rename {} -> {} failed: {}", tmp.string(), path.string(), std::strerror(err));
  }
  fsync_path(dir);
}

void replace_dir_atomic(const fs::path& tmp, const fs::path& dst) {
  for (const auto& e : fs::recursive_directory_iterator(tmp))
    if (e.is_regular_file()) fsync_path(e.path());
  fsync_path(tmp);
  fs::path parent = dst.has_parent_path() ? dst.parent_path() : fs::path(".");
  fs::path old;
  if (fs::exists(dst)) {
    old = parent / fmt::format(".{}.old{}", dst.filename().string(), std::random_device{}());
    fs::rename(dst, old);
  }
  fs::rename(tmp, dst);
  fsync_path(parent);
  if (!old.empty()) fs::remove_all(old);
}

}  // namespace r1
