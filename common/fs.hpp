// File helpers with errors that name the file: whole-file reads, atomic writes (temp file, fsync,
// rename, fsync of the folder) so a crash never leaves a half-written file, and atomic folders.
#pragma once
#include <filesystem>
#include <string>
#include <string_view>

namespace r1 {

std::string read_file(const std::filesystem::path& path);

// Writes `data` to `path` atomically: readers see the old file or the new one, never a mix.
void write_file_atomic(const std::filesystem::path& path, std::string_view data);

// Writes all of `data` to descriptor `fd` (retrying short writes and EINTR); `file` names it in the
// error.
void write_all(int fd, std::string_view data, const std::filesystem::path& file);

// fsync a file or folder by path (folders: makes a rename inside it durable).
void fsync_path(const std::filesystem::path& path);

// Replaces folder `dst` by the complete folder `tmp` (same filesystem): fsyncs, renames, and removes
// the old `dst` only after the new one is in place.
void replace_dir_atomic(const std::filesystem::path& tmp, const std::filesystem::path& dst);

}  // namespace r1
