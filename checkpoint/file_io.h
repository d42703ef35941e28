// file_io.h — the durable-write primitives checkpoints and safetensors files share: an RAII
// file descriptor, write-everything, fsync of files and directories, errno as Status.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/status.h"

namespace cmoe::fileio {

// RAII file descriptor (-1 = none).
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd();
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept;  // closes the descriptor held before
  int get() const { return fd_; }

 private:
  int fd_;
};

// "<what> <path>: <strerror(errno)>" as an internal error.
absl::Status errno_error(const std::string& what, const std::string& path);
// Writes all n bytes (retrying short writes and EINTR); path names the file in errors.
absl::Status write_all(int fd, const void* data, size_t n, const std::string& path);
// Creates (truncates) path with bytes and fsyncs it.
absl::Status write_file_synced(const std::string& path, const std::string& bytes);
// fsyncs a directory, so renames and creations inside it are durable.
absl::Status fsync_dir(const std::string& path);

}  // namespace cmoe::fileio
