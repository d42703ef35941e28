// checkpoint.cpp — atomic save, latest pointer, verified load (see checkpoint.h).
#include "checkpoint/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "checkpoint/crc32c.h"
#include "checkpoint/file_io.h"
#include "google/protobuf/text_format.h"

namespace cmoe {

namespace fs = std::filesystem;

namespace {

using fileio::errno_error;
using fileio::Fd;
using fileio::fsync_dir;
using fileio::write_all;
using fileio::write_file_synced;

std::string step_dir_name(int64_t step) { return absl::StrFormat("step_%08d", step); }

absl::StatusOr<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<DType> parse_dtype(const std::string& s, const std::string& where) {
  for (int i = 0; i < kNumDTypes; ++i)
    if (s == dtype_name(static_cast<DType>(i))) return static_cast<DType>(i);
  return absl::DataLossError(absl::StrCat(where, ": unknown dtype \"", s, "\""));
}

}  // namespace

int64_t LoadedCheckpoint::counter(const std::string& name, int64_t fallback) const {
  for (const auto& c : manifest.counters())
    if (c.name() == name) return c.value();
  return fallback;
}

absl::StatusOr<std::string> checkpoint_save(const std::string& root, checkpoint::Manifest meta,
                                            const std::vector<NamedTensor>& tensors, int keep_last) {
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create checkpoint root ", root, ": ", ec.message()));
  const std::string name = step_dir_name(meta.step());
  const std::string tmp = absl::StrCat(root, "/.tmp-", name), final_dir = absl::StrCat(root, "/", name);
  fs::remove_all(tmp, ec);  // a leftover from a crashed save
  fs::create_directory(tmp, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", tmp, ": ", ec.message()));

  // tensors.bin: each tensor's bytes back to back, 64-byte aligned offsets.
  const std::string data_path = tmp + "/tensors.bin";
  {
    Fd fd(::open(data_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0) return errno_error("cannot create", data_path);
    uint64_t offset = 0;
    static const char kZeros[64] = {};
    meta.clear_tensors();
    for (const NamedTensor& nt : tensors) {
      const Tensor host = nt.tensor.device().is_cpu() ? nt.tensor : nt.tensor.to(kCPU);
      const uint64_t pad = (64 - offset % 64) % 64;
      CMOE_RETURN_IF_ERROR(write_all(fd.get(), kZeros, pad, data_path));
      offset += pad;
      checkpoint::TensorEntry* e = meta.add_tensors();
      e->set_name(nt.name);
      e->set_dtype(dtype_name(host.dtype()));
      for (int64_t d : host.shape().dims()) e->add_shape(d);
      if (host.rank() > 0) {
        e->add_slice_begin(0);
        e->add_slice_end(host.dim(0));
      }
      e->set_file("tensors.bin");
      e->set_offset(offset);
      e->set_nbytes(host.nbytes());
      e->set_crc32c(crc32c(host.raw_data(), host.nbytes()));
      CMOE_RETURN_IF_ERROR(write_all(fd.get(), host.raw_data(), host.nbytes(), data_path));
      offset += host.nbytes();
    }
    if (::fsync(fd.get()) != 0) return errno_error("cannot fsync", data_path);
  }
  meta.set_format_version(1);
  CMOE_RETURN_IF_ERROR(write_file_synced(tmp + "/manifest.pb", meta.SerializeAsString()));
  std::string text;
  google::protobuf::TextFormat::PrintToString(meta, &text);
  CMOE_RETURN_IF_ERROR(write_file_synced(tmp + "/manifest.txt", text));
  CMOE_RETURN_IF_ERROR(fsync_dir(tmp));

  fs::remove_all(final_dir, ec);  // re-saving the same step replaces it (only ever a complete one)
  if (::rename(tmp.c_str(), final_dir.c_str()) != 0) return errno_error("cannot rename into", final_dir);
  CMOE_RETURN_IF_ERROR(fsync_dir(root));
  const std::string latest_tmp = root + "/.latest.tmp";
  CMOE_RETURN_IF_ERROR(write_file_synced(latest_tmp, name + "\n"));
  if (::rename(latest_tmp.c_str(), (root + "/latest").c_str()) != 0) return errno_error("cannot update", root + "/latest");
  CMOE_RETURN_IF_ERROR(fsync_dir(root));

  // Retention: keep the newest keep_last step directories.
  std::vector<std::string> steps;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string n = entry.path().filename().string();
    if (entry.is_directory() && n.rfind("step_", 0) == 0) steps.push_back(n);
  }
  std::sort(steps.begin(), steps.end());
  for (size_t i = 0; i + static_cast<size_t>(keep_last) < steps.size(); ++i) {
    if (steps[i] != name) fs::remove_all(root + "/" + steps[i], ec);
  }
  return final_dir;
}

absl::StatusOr<std::string> checkpoint_latest(const std::string& root) {
  auto text = read_file(root + "/latest");
  if (!text.ok()) return absl::NotFoundError(absl::StrCat("no checkpoint under ", root, " (no 'latest' file)"));
  std::string name = *text;
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  if (name.rfind("step_", 0) != 0 || name.find('/') != std::string::npos) {
    return absl::DataLossError(absl::StrCat(root, "/latest: expected a step_NNNNNNNN directory name, found \"", name, "\""));
  }
  return root + "/" + name;
}

absl::StatusOr<LoadedCheckpoint> checkpoint_load(const std::string& dir) {
  LoadedCheckpoint ck;
  ck.dir = dir;
  const std::string mpath = dir + "/manifest.pb";
  CMOE_ASSIGN_OR_RETURN(std::string mbytes, read_file(mpath));
  if (!ck.manifest.ParseFromString(mbytes)) {
    return absl::DataLossError(absl::StrCat(mpath, ": not a valid checkpoint manifest (", mbytes.size(), " bytes)"));
  }
  if (ck.manifest.format_version() != 1) {
    return absl::DataLossError(absl::StrCat(mpath, ": format_version ", ck.manifest.format_version(), ", expected 1"));
  }
  // Tensor bytes are read with pread straight into each tensor's storage: no whole-file
  // buffer and no second copy.
  struct OpenFile {
    std::unique_ptr<Fd> fd;
    uint64_t size = 0;
  };
  std::map<std::string, OpenFile> files;
  for (const checkpoint::TensorEntry& e : ck.manifest.tensors()) {
    const std::string where = absl::StrCat(dir, "/", e.file(), " tensor ", e.name());
    if (e.file().empty() || e.file().find('/') != std::string::npos || e.file().find("..") != std::string::npos) {
      return absl::DataLossError(absl::StrCat(mpath, ": tensor ", e.name(), " names bad file \"", e.file(), "\""));
    }
    if (!files.count(e.file())) {
      const std::string path = dir + "/" + e.file();
      auto fd = std::make_unique<Fd>(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      struct stat st;
      if (fd->get() < 0 || ::fstat(fd->get(), &st) != 0) {
        return absl::DataLossError(absl::StrCat("missing checkpoint file ", path, " (tensor ", e.name(), ")"));
      }
      files[e.file()] = {std::move(fd), static_cast<uint64_t>(st.st_size)};
    }
    const OpenFile& f = files[e.file()];
    if (e.offset() + e.nbytes() > f.size) {
      return absl::DataLossError(absl::StrCat(where, ": needs bytes [", e.offset(), ", ", e.offset() + e.nbytes(),
                                              ") but the file has ", f.size, " bytes (truncated?)"));
    }
    CMOE_ASSIGN_OR_RETURN(DType dt, parse_dtype(e.dtype(), where));
    std::vector<int64_t> dims(e.shape().begin(), e.shape().end());
    Shape shape{std::span<const int64_t>(dims)};
    if (static_cast<uint64_t>(shape.numel()) * dtype_size(dt) != e.nbytes()) {
      return absl::DataLossError(absl::StrCat(where, ": shape ", shape.str(), " of ", e.dtype(), " is ",
                                              shape.numel() * dtype_size(dt), " bytes, manifest says ", e.nbytes()));
    }
    Tensor t = Tensor::empty(shape, dt);
    char* dst = static_cast<char*>(t.raw_data());
    for (uint64_t done = 0; done < e.nbytes();) {
      const ssize_t r = ::pread(f.fd->get(), dst + done, e.nbytes() - done, static_cast<off_t>(e.offset() + done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return r < 0 ? errno_error("cannot read", where) : absl::DataLossError(absl::StrCat(where, ": short read"));
      done += static_cast<uint64_t>(r);
    }
    const uint32_t crc = crc32c(dst, e.nbytes());
    if (crc != e.crc32c()) {
      return absl::DataLossError(absl::StrFormat("%s at offset %d: CRC-32C %08x, manifest says %08x (corrupt data)",
                                                 where, e.offset(), crc, e.crc32c()));
    }
    ck.tensors[e.name()] = t;
  }
  return ck;
}

}  // namespace cmoe
