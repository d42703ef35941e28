// checkpoint.cpp — sharded atomic save, latest pointer, verified load (see checkpoint.h).
#include "checkpoint/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <limits>
#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "checkpoint/crc32c.h"
#include "checkpoint/file_io.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"

namespace cmoe {

namespace fs = std::filesystem;

namespace {

using fileio::errno_error;
using fileio::Fd;
using fileio::fsync_dir;
using fileio::write_file_synced;

// The whole of a regular file (a directory or device in its place is an error naming it).
absl::StatusOr<std::string> read_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    return errno == ENOENT ? absl::NotFoundError(absl::StrCat(path, ": missing")) : errno_error("cannot open", path);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return errno_error("cannot stat", path);
  if (!S_ISREG(st.st_mode)) return absl::DataLossError(absl::StrCat(path, ": not a regular file"));
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t r = ::read(fd.get(), out.data() + done, out.size() - done);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno_error("cannot read", path);
    if (r == 0) break;  // shrank while we read: what is there is what we check
    done += static_cast<size_t>(r);
  }
  out.resize(done);
  return out;
}

// The one-byte tag of Manifest.manifest_crc32c (field 15, wire type 5 = fixed32).
constexpr char kManifestCrcTag = static_cast<char>((15 << 3) | 5);
constexpr size_t kManifestCrcBytes = 5;

std::string crc_hex(uint32_t crc) { return absl::StrFormat("%08x", crc); }

uint32_t load_le32(const char* p) {
  return static_cast<uint32_t>(static_cast<uint8_t>(p[0])) | static_cast<uint32_t>(static_cast<uint8_t>(p[1])) << 8 |
         static_cast<uint32_t>(static_cast<uint8_t>(p[2])) << 16 | static_cast<uint32_t>(static_cast<uint8_t>(p[3])) << 24;
}

// "step_00000042" -> 42; -1 when `name` is not step_ and digits.
int64_t step_of_name(const std::string& name) {
  if (name.size() <= 5 || name.rfind("step_", 0) != 0) return -1;
  int64_t v = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || v > (int64_t{1} << 50)) return -1;
    v = v * 10 + (name[i] - '0');
  }
  return v;
}

absl::StatusOr<DType> parse_dtype(const std::string& s, const std::string& where) {
  for (int i = 0; i < kNumDTypes; ++i)
    if (s == dtype_name(static_cast<DType>(i))) return static_cast<DType>(i);
  return absl::DataLossError(absl::StrCat(where, ": unknown dtype \"", s, "\""));
}

bool safe_file_name(const std::string& f) {
  return !f.empty() && f.find('/') == std::string::npos && f.find("..") == std::string::npos;
}

int64_t counter_of(const checkpoint::Manifest& m, const std::string& name, int64_t fallback) {
  for (const auto& c : m.counters())
    if (c.name() == name) return c.value();
  return fallback;
}

}  // namespace

std::string checkpoint_step_name(int64_t step) { return absl::StrFormat("step_%08d", step); }

void checkpoint_crash_point(const char* point, int64_t step) {
  static const char* spec = std::getenv("CMOE_CHECKPOINT_CRASH");
  if (spec == nullptr || *spec == '\0') return;
  std::vector<std::string> parts = absl::StrSplit(spec, ':');
  int64_t at_step = -1, at_rank = -1;
  if (parts.size() < 2 || parts.size() > 3 || !absl::SimpleAtoi(parts[1], &at_step) ||
      (parts.size() == 3 && !absl::SimpleAtoi(parts[2], &at_rank))) {
    return;
  }
  if (parts[0] != point || at_step != step) return;
  if (at_rank >= 0) {
    const char* r = std::getenv("OMPI_COMM_WORLD_RANK");
    int64_t me = 0;
    if (r != nullptr && !absl::SimpleAtoi(r, &me)) return;
    if (me != at_rank) return;
  }
  std::fprintf(stderr, "CMOE_CHECKPOINT_CRASH: killing this process at %s of step %lld\n", point,
               static_cast<long long>(step));
  std::fflush(stderr);
  std::raise(SIGKILL);
}

void checkpoint_abort(const std::string& root, int64_t step) {
  std::error_code ec;
  fs::remove_all(absl::StrCat(root, "/.tmp-", checkpoint_step_name(step)), ec);
  fs::remove(root + "/.latest.tmp", ec);
  if (!ec) (void)fsync_dir(root);
}

std::string checkpoint_manifest_bytes(checkpoint::Manifest* meta) {
  meta->set_format_version(kCheckpointFormatVersion);
  meta->clear_manifest_crc32c();
  std::string bytes = meta->SerializeAsString();
  const uint32_t crc = crc32c(bytes.data(), bytes.size());
  meta->set_manifest_crc32c(crc);
  bytes.push_back(kManifestCrcTag);
  for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>((crc >> (8 * i)) & 0xff));
  return bytes;
}

std::string checkpoint_manifest_text(const checkpoint::Manifest& meta) {
  // Known fields only: a field this build does not know has no name to print (and the text
  // parser could not read its number back).
  std::string text;
  google::protobuf::TextFormat::Printer printer;
  printer.SetHideUnknownFields(true);
  printer.PrintToString(meta, &text);
  return absl::StrCat("# manifest.txt: manifest.pb in protobuf text format, for people; never read back.\n",
                      "# manifest.pb's CRC-32C is manifest_crc32c (", crc_hex(meta.manifest_crc32c()),
                      "); `cmoe checkpoint verify` checks that this copy agrees.\n", text);
}

absl::StatusOr<checkpoint::Manifest> checkpoint_parse_manifest(std::string_view bytes, const std::string& path) {
  if (bytes.empty()) {
    return absl::DataLossError(absl::StrCat(path, ": empty (0 bytes); not a checkpoint manifest (damaged, or a copy "
                                            "that did not finish)"));
  }
  checkpoint::Manifest m;
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()) ||
      !m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError(absl::StrCat(path, ": not a valid checkpoint manifest (", bytes.size(), " bytes)"));
  }
  // The checksum first: a damaged byte anywhere (the version included) is reported as damage.
  // Format 3 manifests end in it; one present in any manifest is checked.
  const uint32_t version = m.format_version();
  if (version >= 3 || m.has_manifest_crc32c()) {
    const size_t n = bytes.size();
    if (n < kManifestCrcBytes || bytes[n - kManifestCrcBytes] != kManifestCrcTag || !m.has_manifest_crc32c() ||
        load_le32(bytes.data() + n - 4) != m.manifest_crc32c()) {
      return absl::DataLossError(absl::StrCat(path, ": format_version ", version, " but the file does not end in its "
                                              "manifest_crc32c field (damaged or cut short; ", n, " bytes)"));
    }
    const uint32_t have = crc32c(bytes.data(), n - kManifestCrcBytes);
    if (have != m.manifest_crc32c()) {
      return absl::DataLossError(absl::StrCat(path, ": CRC-32C of the manifest is ", crc_hex(have), ", its manifest_crc32c "
                                              "says ", crc_hex(m.manifest_crc32c()), " (the manifest is damaged)"));
    }
  }
  if (version < 1 || version > kCheckpointFormatVersion) {
    return absl::DataLossError(absl::StrCat(path, ": format_version ", version,
                                            version == 0 ? " (missing)" : "", ", this build reads 1 to ",
                                            kCheckpointFormatVersion));
  }
  if (m.step() < 0 || m.tokens_seen() < 0) {
    return absl::DataLossError(absl::StrCat(path, ": step ", m.step(), ", tokens_seen ", m.tokens_seen(),
                                            "; expected both >= 0"));
  }
  for (int i = 0; i < m.counters_size(); ++i) {
    const auto& c = m.counters(i);
    if (c.value() < 0) {
      return absl::DataLossError(absl::StrCat(path, ": counter ", c.name(), " = ", c.value(), "; expected >= 0"));
    }
    for (int j = 0; j < i; ++j) {
      if (m.counters(j).name() == c.name()) {
        return absl::DataLossError(absl::StrCat(path, ": counter ", c.name(), " appears twice"));
      }
    }
  }
  if (m.has_layout() && (m.layout().pp() < 1 || m.layout().dp() < 1 || m.layout().ep() < 1)) {
    return absl::DataLossError(absl::StrCat(path, ": layout pp ", m.layout().pp(), " dp ", m.layout().dp(), " ep ",
                                            m.layout().ep(), "; expected each >= 1"));
  }
  return m;
}

absl::StatusOr<checkpoint::Manifest> checkpoint_read_manifest(const std::string& dir) {
  const std::string path = dir + "/manifest.pb";
  auto bytes = read_file(path);
  if (absl::IsNotFound(bytes.status())) {
    return absl::DataLossError(absl::StrCat(path, ": missing (not a checkpoint step directory, or an incomplete one)"));
  }
  if (!bytes.ok()) return bytes.status();
  CMOE_ASSIGN_OR_RETURN(checkpoint::Manifest m, checkpoint_parse_manifest(*bytes, path));
  std::string name = dir;
  while (name.size() > 1 && name.back() == '/') name.pop_back();
  name = fs::path(name).filename().string();
  const int64_t dir_step = step_of_name(name);
  if (dir_step >= 0 && dir_step != m.step()) {
    return absl::DataLossError(absl::StrCat(path, ": the manifest is of step ", m.step(), " but its directory is ",
                                            name, " (a renamed or mixed-up checkpoint directory)"));
  }
  return m;
}

absl::Status checkpoint_check_manifest_text(const std::string& dir, const checkpoint::Manifest& m) {
  const std::string path = dir + "/manifest.txt";
  auto text = read_file(path);
  if (!text.ok()) {
    return absl::DataLossError(absl::StrCat(text.status().message(), " (every checkpoint holds a manifest.txt beside "
                                            "manifest.pb)"));
  }
  // The parser's first complaint, with its line and column (instead of protobuf's log line).
  struct FirstError final : google::protobuf::io::ErrorCollector {
    std::string first;
    void AddError(int line, google::protobuf::io::ColumnNumber column, const std::string& message) override {
      if (!first.empty()) return;
      first = absl::StrCat("line ", line + 1, ", column ", column + 1, ": ", message);
      while (!first.empty() && first.back() == '.') first.pop_back();
    }
  } errors;
  checkpoint::Manifest copy;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(*text, &copy)) {
    return absl::DataLossError(absl::StrCat(path, ": not a readable text-format manifest (damaged or edited) at ",
                                            errors.first, "; manifest.pb is what loads"));
  }
  checkpoint::Manifest known = m;  // the text holds the known fields (checkpoint_manifest_text)
  known.DiscardUnknownFields();
  google::protobuf::util::MessageDifferencer diff;
  std::string report;
  diff.ReportDifferencesToString(&report);
  if (!diff.Compare(known, copy)) {
    while (!report.empty() && report.back() == '\n') report.pop_back();
    if (report.size() > 600) report = report.substr(0, 600) + " ...";
    return absl::DataLossError(absl::StrCat(path, ": disagrees with manifest.pb, which is what loads (edited or "
                                            "damaged): ", report));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> checkpoint_prepare(const std::string& root, int64_t step) {
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create checkpoint root ", root, ": ", ec.message()));
  // Leftovers of crashed saves (of any step: one save runs at a time per root) go first, so a
  // crash's partial files do not outlive the next save.
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string n = entry.path().filename().string();
    if (n.rfind(".tmp-step_", 0) == 0 || n == ".latest.tmp") fs::remove_all(entry.path(), ec);
  }
  const std::string tmp = absl::StrCat(root, "/.tmp-", checkpoint_step_name(step));
  fs::remove_all(tmp, ec);
  ec.clear();
  fs::create_directory(tmp, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", tmp, ": ", ec.message()));
  return tmp;
}

namespace {

constexpr uint64_t kDirectAlign = 4096;

// The manifest entry of `st` at `offset` in `file` (CRC left for the caller); checks the slice
// against the global shape.
absl::StatusOr<checkpoint::TensorEntry> entry_for(const ShardTensor& st, const Tensor& host, const std::string& file,
                                                  uint64_t offset) {
  const Shape& g = st.global_shape;
  bool shape_ok = g.rank() == host.rank();
  for (int d = 1; shape_ok && d < g.rank(); ++d) shape_ok = g[d] == host.dim(d);
  if (!shape_ok || (g.rank() > 0 && (st.row_begin < 0 || st.row_begin + host.dim(0) > g[0]))) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint tensor ", st.name, ": slice ", host.shape().str(),
                                                   " at row ", st.row_begin, " does not fit global shape ", g.str()));
  }
  checkpoint::TensorEntry e;
  e.set_name(st.name);
  e.set_dtype(dtype_name(host.dtype()));
  for (int64_t d : g.dims()) e.add_shape(d);
  if (g.rank() > 0) {
    e.add_slice_begin(st.row_begin);
    e.add_slice_end(st.row_begin + host.dim(0));
  }
  e.set_file(file);
  e.set_offset(offset);
  e.set_nbytes(host.nbytes());
  return e;
}

uint64_t align64(uint64_t offset) { return (offset + 63) / 64 * 64; }

// A shard file's layout: each tensor (on the host) at the next 64-byte boundary; its entries
// without CRCs. Returns the file size.
absl::StatusOr<uint64_t> shard_layout(const std::string& file, const std::vector<ShardTensor>& tensors,
                                      std::vector<Tensor>* hosts, std::vector<checkpoint::TensorEntry>* entries) {
  uint64_t size = 0;
  for (const ShardTensor& st : tensors) {
    hosts->push_back(st.data.device().is_cpu() ? st.data : st.data.to(kCPU));
    size = align64(size);
    CMOE_ASSIGN_OR_RETURN(checkpoint::TensorEntry e, entry_for(st, hosts->back(), file, size));
    entries->push_back(std::move(e));
    size += hosts->back().nbytes();
  }
  return size;
}

}  // namespace

namespace {

// pwrite of all n bytes at `offset`.
absl::Status pwrite_all(int fd, const char* data, uint64_t n, uint64_t offset, const std::string& path) {
  for (uint64_t done = 0; done < n;) {
    const ssize_t w = ::pwrite(fd, data + done, n - done, static_cast<off_t>(offset + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return errno_error("cannot write", path);
    done += static_cast<uint64_t>(w);
  }
  return absl::OkStatus();
}

// Opens `path` for writing, with O_DIRECT if want_direct and the file system allows it (some
// refuse the flag: then an ordinary descriptor). *direct says which.
absl::StatusOr<int> open_for_write(const std::string& path, bool want_direct, bool* direct) {
  int fd = want_direct ? ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0644) : -1;
  *direct = fd >= 0;
  if (fd < 0) fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno_error("cannot create", path);
  return fd;
}

}  // namespace

absl::StatusOr<std::vector<checkpoint::TensorEntry>> checkpoint_write_shard(const std::string& dir,
                                                                            const std::string& file,
                                                                            const std::vector<ShardTensor>& tensors,
                                                                            int64_t step, bool direct_io) {
  if (!safe_file_name(file)) return absl::InvalidArgumentError(absl::StrCat("bad shard file name \"", file, "\""));
  const std::string path = dir + "/" + file;
  // Layout first (offsets), then the bytes; CRCs while the bytes go.
  std::vector<checkpoint::TensorEntry> entries;
  std::vector<Tensor> hosts;
  CMOE_ASSIGN_OR_RETURN(const uint64_t size, shard_layout(file, tensors, &hosts, &entries));
  bool direct = false;
  CMOE_ASSIGN_OR_RETURN(int raw_fd, open_for_write(path, direct_io, &direct));
  Fd fd(raw_fd);
  // Then the bytes, streamed through two aligned 8 MiB staging buffers: this thread copies the
  // tensors (and their CRCs) into one while a writer thread writes the other, with O_DIRECT
  // (no page-cache copy; the device reads the buffer) where possible. The file is then at disk
  // speed and the copy and CRCs hide behind the writes.
  constexpr uint64_t kStage = 8u << 20;
  struct Stage {
    std::unique_ptr<char, void (*)(void*)> buf{static_cast<char*>(std::aligned_alloc(kDirectAlign, kStage)), std::free};
    std::future<absl::Status> write;
  };
  Stage stages[2];
  if (!stages[0].buf || !stages[1].buf) return absl::ResourceExhaustedError("checkpoint: cannot allocate staging buffers");
  int cur = 0;
  uint64_t filled = 0, file_offset = 0;
  bool crashed_half = false;
  // Hands the current buffer (filled bytes, padded to the alignment for O_DIRECT) to a writer
  // thread and waits for the other buffer to be free.
  auto flush = [&]() -> absl::Status {
    uint64_t n = filled;
    if (direct && n % kDirectAlign != 0) {
      const uint64_t padded = (n + kDirectAlign - 1) / kDirectAlign * kDirectAlign;
      std::memset(stages[cur].buf.get() + n, 0, padded - n);
      n = padded;
    }
    const char* data = stages[cur].buf.get();
    const int f = fd.get();
    const uint64_t at = file_offset;
    stages[cur].write = std::async(std::launch::async, [f, data, n, at, &path] { return pwrite_all(f, data, n, at, path); });
    file_offset += filled;
    filled = 0;
    cur ^= 1;
    if (!crashed_half && file_offset >= size / 2) {
      crashed_half = true;
      checkpoint_crash_point("shard_data", step);  // half written
    }
    if (stages[cur].write.valid()) return stages[cur].write.get();
    return absl::OkStatus();
  };
  // Appends n bytes of data (zeros when data is null) to the stream.
  auto append = [&](const char* data, uint64_t n) -> absl::Status {
    while (n > 0) {
      const uint64_t take = std::min(n, kStage - filled);
      if (data != nullptr) std::memcpy(stages[cur].buf.get() + filled, data, take), data += take;
      else std::memset(stages[cur].buf.get() + filled, 0, take);
      filled += take, n -= take;
      if (filled == kStage) CMOE_RETURN_IF_ERROR(flush());
    }
    return absl::OkStatus();
  };
  absl::Status st = absl::OkStatus();
  uint64_t at = 0;
  for (size_t i = 0; i < hosts.size() && st.ok(); ++i) {
    st = append(nullptr, entries[i].offset() - at);
    if (st.ok()) st = append(static_cast<const char*>(hosts[i].raw_data()), hosts[i].nbytes());
    entries[i].set_crc32c(crc32c(hosts[i].raw_data(), hosts[i].nbytes()));  // overlaps the writes in flight
    at = entries[i].offset() + hosts[i].nbytes();
  }
  if (st.ok() && filled > 0) st = flush();
  for (Stage& stage : stages) {  // both writes finished before the buffers go
    if (stage.write.valid()) {
      absl::Status w = stage.write.get();
      if (st.ok()) st = w;
    }
  }
  CMOE_RETURN_IF_ERROR(st);
  if (direct && ::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) return errno_error("cannot truncate", path);
  if (::fsync(fd.get()) != 0) return errno_error("cannot fsync", path);
  return entries;
}

absl::StatusOr<ShardImage> checkpoint_shard_image(const std::string& file, const std::vector<ShardTensor>& tensors,
                                                  ShardImage* reuse) {
  if (!safe_file_name(file)) return absl::InvalidArgumentError(absl::StrCat("bad shard file name \"", file, "\""));
  ShardImage img;
  img.file = file;
  std::vector<Tensor> hosts;
  CMOE_ASSIGN_OR_RETURN(const uint64_t offset, shard_layout(file, tensors, &hosts, &img.entries));
  img.size = offset;
  const uint64_t capacity = std::max<uint64_t>(kDirectAlign, (offset + kDirectAlign - 1) / kDirectAlign * kDirectAlign);
  if (reuse != nullptr && reuse->bytes && reuse->capacity >= capacity) {
    img.bytes = std::move(reuse->bytes);
    img.capacity = reuse->capacity;
  } else {
    char* fresh = static_cast<char*>(std::aligned_alloc(kDirectAlign, capacity));
    if (fresh == nullptr) {
      return absl::ResourceExhaustedError(absl::StrCat("checkpoint snapshot of ", file, ": cannot allocate ", capacity, " bytes"));
    }
    img.bytes = std::shared_ptr<char>(fresh, [](char* p) { std::free(p); });
    img.capacity = capacity;
  }
  char* raw = img.bytes.get();
  uint64_t at = 0;
  for (size_t i = 0; i < hosts.size(); ++i) {
    const uint64_t off = img.entries[i].offset();
    std::memset(raw + at, 0, off - at);
    std::memcpy(raw + off, hosts[i].raw_data(), hosts[i].nbytes());
    at = off + hosts[i].nbytes();
  }
  std::memset(raw + at, 0, capacity - at);  // through the padding O_DIRECT writes
  return img;
}

absl::StatusOr<std::vector<checkpoint::TensorEntry>> checkpoint_write_image(const std::string& dir, ShardImage& image,
                                                                            int64_t step, bool direct_io) {
  const std::string path = dir + "/" + image.file;
  const char* raw = image.bytes.get();
  // The entries' CRCs on a second thread while the image is written (both only read it): done
  // first, they cost a sixth of the write's time. Any return waits for it (the future's
  // destructor), so the entries are never read half-done.
  std::future<void> crcs = std::async(std::launch::async, [&image, raw] {
    for (checkpoint::TensorEntry& e : image.entries) e.set_crc32c(crc32c(raw + e.offset(), e.nbytes()));
  });
  // O_DIRECT where possible: the device reads the (aligned) image itself, no page-cache copy.
  bool direct = false;
  CMOE_ASSIGN_OR_RETURN(int raw_fd, open_for_write(path, direct_io, &direct));
  Fd fd(raw_fd);
  const uint64_t total = direct ? (image.size + kDirectAlign - 1) / kDirectAlign * kDirectAlign : image.size;
  constexpr uint64_t kChunk = 8u << 20;
  for (uint64_t done = 0; done < total; done += kChunk) {
    CMOE_RETURN_IF_ERROR(pwrite_all(fd.get(), raw + done, std::min(kChunk, total - done), done, path));
    if (done < total / 2 && done + kChunk >= total / 2) checkpoint_crash_point("shard_data", step);  // half written
  }
  if (direct && ::ftruncate(fd.get(), static_cast<off_t>(image.size)) != 0) return errno_error("cannot truncate", path);
  if (::fsync(fd.get()) != 0) return errno_error("cannot fsync", path);
  crcs.get();
  return image.entries;
}

absl::StatusOr<std::string> checkpoint_commit(const std::string& root, checkpoint::Manifest meta, int keep_last) {
  const std::string name = checkpoint_step_name(meta.step());
  const std::string tmp = absl::StrCat(root, "/.tmp-", name), final_dir = absl::StrCat(root, "/", name);
  checkpoint_crash_point("manifest", meta.step());
  // Until the rename, a failure (a full disk) removes the staging directory: a failed save
  // leaves nothing behind.
  auto staged = [&]() -> absl::Status {
    const std::string bytes = checkpoint_manifest_bytes(&meta);
    CMOE_RETURN_IF_ERROR(write_file_synced(tmp + "/manifest.pb", bytes));
    CMOE_RETURN_IF_ERROR(write_file_synced(tmp + "/manifest.txt", checkpoint_manifest_text(meta)));
    return fsync_dir(tmp);
  }();
  if (!staged.ok()) {
    checkpoint_abort(root, meta.step());
    return staged;
  }

  std::error_code ec;
  fs::remove_all(final_dir, ec);  // re-saving the same step replaces it (only ever a complete one)
  if (::rename(tmp.c_str(), final_dir.c_str()) != 0) {
    absl::Status st = errno_error("cannot rename into", final_dir);
    checkpoint_abort(root, meta.step());
    return st;
  }
  CMOE_RETURN_IF_ERROR(fsync_dir(root));
  checkpoint_crash_point("rename", meta.step());
  // From here step_N is complete; a failure to update `latest` leaves the previous one (as a
  // crash here would) and no .latest.tmp.
  const std::string latest_tmp = root + "/.latest.tmp";
  absl::Status latest = write_file_synced(latest_tmp, absl::StrCat(name, "\nmanifest_crc32c ", crc_hex(meta.manifest_crc32c()), "\n"));
  if (latest.ok() && ::rename(latest_tmp.c_str(), (root + "/latest").c_str()) != 0) latest = errno_error("cannot update", root + "/latest");
  if (!latest.ok()) {
    fs::remove(latest_tmp, ec);
    return latest;
  }
  CMOE_RETURN_IF_ERROR(fsync_dir(root));
  checkpoint_crash_point("latest", meta.step());

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

absl::StatusOr<std::string> checkpoint_save(const std::string& root, checkpoint::Manifest meta,
                                            const std::vector<NamedTensor>& tensors, int keep_last,
                                            const std::string& file, bool direct_io) {
  CMOE_ASSIGN_OR_RETURN(std::string tmp, checkpoint_prepare(root, meta.step()));
  std::vector<ShardTensor> shard;
  shard.reserve(tensors.size());
  for (const NamedTensor& t : tensors) shard.push_back({t.name, t.tensor, t.tensor.shape(), 0});
  auto entries = checkpoint_write_shard(tmp, file, shard, meta.step(), direct_io);
  if (!entries.ok()) {
    checkpoint_abort(root, meta.step());
    return entries.status();
  }
  meta.clear_tensors();
  for (auto& e : *entries) *meta.add_tensors() = std::move(e);
  return checkpoint_commit(root, std::move(meta), keep_last);
}

absl::StatusOr<std::string> checkpoint_latest(const std::string& root) {
  const std::string path = root + "/latest";
  auto text = read_file(path);
  if (absl::IsNotFound(text.status())) {
    return absl::NotFoundError(absl::StrCat("no checkpoint under ", root, " (no 'latest' file)"));
  }
  if (!text.ok()) return text.status();
  std::vector<std::string> lines = absl::StrSplit(*text, '\n');
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  for (std::string& l : lines) {
    while (!l.empty() && (l.back() == ' ' || l.back() == '\r')) l.pop_back();
  }
  const std::string name = lines.empty() ? std::string() : lines[0];
  if (step_of_name(name) < 0 || lines.size() > 2) {
    return absl::DataLossError(absl::StrCat(path, ": expected a step_NNNNNNNN directory name and a manifest_crc32c "
                                            "line, found \"", absl::CEscape(text->substr(0, 80)), "\" (damaged?)"));
  }
  const std::string dir = root + "/" + name;
  if (lines.size() == 2) {
    uint32_t want = 0;
    const std::string& l = lines[1];
    if (l.size() != 24 || l.rfind("manifest_crc32c ", 0) != 0 || !absl::SimpleHexAtoi(l.substr(16), &want)) {
      return absl::DataLossError(absl::StrCat(path, ": second line \"", absl::CEscape(l),
                                              "\", expected \"manifest_crc32c\" and 8 hex digits (damaged?)"));
    }
    CMOE_ASSIGN_OR_RETURN(checkpoint::Manifest m, checkpoint_read_manifest(dir));
    if (!m.has_manifest_crc32c() || m.manifest_crc32c() != want) {
      return absl::DataLossError(absl::StrCat(path, ": names ", name, " with manifest_crc32c ", crc_hex(want), " but ", dir,
                                              "/manifest.pb ", m.has_manifest_crc32c() ? "has " + crc_hex(m.manifest_crc32c()) : "has none",
                                              " (latest or that checkpoint is damaged; give the step directory itself "
                                              "to use it anyway)"));
    }
  }
  return dir;
}

// ---------------------------------------------------------------------------------------------
// Reading.

// A checkpoint file as the reader streams it. Entries are read in 8 MiB blocks with O_DIRECT
// (where the file system allows it): while one block is copied out and CRC-checked, the next
// kDepth - 1 are read by helper threads, so the disk always has large requests in flight and
// the page cache is neither used nor polluted. Buffered reads with kernel readahead (fadvise
// WILLNEED) are the fallback where O_DIRECT is refused (tmpfs and some network file systems).
struct CheckpointReader::File {
  static constexpr uint64_t kBlock = uint64_t{8} << 20;
  static constexpr int kDepth = 3;
  struct Slot {
    std::unique_ptr<char, void (*)(void*)> buf{nullptr, std::free};
    int64_t index = -1;             // the block of the file it holds or is being read into it
    uint64_t len = 0;               // bytes read (short only at the end of the file)
    std::future<int64_t> pending;   // valid while a helper reads into buf
  };
  Fd fd;
  uint64_t size = 0;
  uint64_t prefetched = 0;  // buffered fallback: readahead requested up to here
  Fd direct{-1};            // O_DIRECT descriptor, or -1
  Slot slots[kDepth];
  explicit File(int f) : fd(f) {}
  ~File() {
    for (Slot& s : slots)
      if (s.pending.valid()) s.pending.wait();  // a helper writes into s.buf
  }
};

namespace {

// Reads up to `len` bytes at `off` (aligned) until full or end of file: bytes read or -errno.
int64_t read_block(int fd, char* buf, uint64_t len, uint64_t off) {
  uint64_t done = 0;
  while (done < len) {
    const ssize_t r = ::pread(fd, buf + done, len - done, static_cast<off_t>(off + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -errno;
    if (r == 0) break;
    done += static_cast<uint64_t>(r);
  }
  return static_cast<int64_t>(done);
}

}  // namespace

CheckpointReader::~CheckpointReader() = default;

int64_t CheckpointReader::counter(const std::string& name, int64_t fallback) const {
  return counter_of(manifest_, name, fallback);
}

const CheckpointReader::Info* CheckpointReader::find(const std::string& name) const {
  auto it = info_.find(name);
  return it == info_.end() ? nullptr : &it->second;
}

absl::StatusOr<std::unique_ptr<CheckpointReader>> CheckpointReader::open(const std::string& dir, bool direct_io) {
  std::unique_ptr<CheckpointReader> r(new CheckpointReader());
  r->dir_ = dir;
  const std::string mpath = dir + "/manifest.pb";
  CMOE_ASSIGN_OR_RETURN(r->manifest_, checkpoint_read_manifest(dir));
  const auto& entries = r->manifest_.tensors();
  for (int i = 0; i < entries.size(); ++i) {
    const checkpoint::TensorEntry& e = entries[i];
    const std::string where = absl::StrCat(dir, "/", e.file(), " tensor ", e.name());
    if (!safe_file_name(e.file())) {
      return absl::DataLossError(absl::StrCat(mpath, ": tensor ", e.name(), " names bad file \"", e.file(), "\""));
    }
    auto fit = r->files_.find(e.file());
    if (fit == r->files_.end()) {
      const std::string path = dir + "/" + e.file();
      auto f = std::make_unique<File>(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      struct stat st;
      if (f->fd.get() < 0 || ::fstat(f->fd.get(), &st) != 0) {
        return absl::DataLossError(absl::StrCat("missing checkpoint file ", path, " (tensor ", e.name(), ")"));
      }
      f->size = static_cast<uint64_t>(st.st_size);
      if (direct_io) f->direct = Fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT));  // -1 where refused
      fit = r->files_.emplace(e.file(), std::move(f)).first;
    }
    if (e.offset() > fit->second->size || e.nbytes() > fit->second->size - e.offset()) {  // no wrap-around
      const std::string end = e.nbytes() > ~uint64_t{0} - e.offset() ? absl::StrCat(e.offset(), " + ", e.nbytes())
                                                                       : absl::StrCat(e.offset() + e.nbytes());
      return absl::DataLossError(absl::StrCat(where, ": needs bytes [", e.offset(), ", ", end, ") but the file has ",
                                              fit->second->size, " bytes (truncated?)"));
    }
    CMOE_ASSIGN_OR_RETURN(DType dt, parse_dtype(e.dtype(), where));
    std::vector<int64_t> dims(e.shape().begin(), e.shape().end());
    if (dims.size() > static_cast<size_t>(kMaxRank) ||
        std::any_of(dims.begin(), dims.end(), [](int64_t d) { return d < 0; })) {
      return absl::DataLossError(absl::StrCat(where, ": bad shape in the manifest"));
    }
    // The element count without overflow: a damaged shape must not wrap into a plausible size.
    int64_t numel = 1;
    bool too_big = false;
    for (int64_t d : dims) too_big = too_big || __builtin_mul_overflow(numel, d, &numel);
    if (too_big || numel > (int64_t{1} << 58)) {
      return absl::DataLossError(absl::StrCat(where, ": shape [", absl::StrJoin(dims, ", "),
                                              "] has more than 2^58 elements (a damaged manifest)"));
    }
    Shape shape{std::span<const int64_t>(dims)};
    int64_t b = 0, end = dims.empty() ? 1 : dims[0];
    if (e.slice_begin_size() != e.slice_end_size() || e.slice_begin_size() > 1 ||
        (dims.empty() && e.slice_begin_size() != 0)) {
      return absl::DataLossError(absl::StrCat(where, ": malformed slice (", e.slice_begin_size(), " begins, ",
                                              e.slice_end_size(), " ends)"));
    }
    if (e.slice_begin_size() == 1) {
      b = e.slice_begin(0), end = e.slice_end(0);
      if (b < 0 || b >= end || end > dims[0]) {
        return absl::DataLossError(absl::StrCat(where, ": rows [", b, ", ", end, ") outside the shape ", shape.str()));
      }
    }
    const int64_t row_elems = dims.empty() ? 1 : (dims[0] == 0 ? 0 : shape.numel() / dims[0]);
    const uint64_t want = static_cast<uint64_t>((end - b) * row_elems) * dtype_size(dt);
    if (want != e.nbytes()) {
      return absl::DataLossError(absl::StrCat(where, ": rows [", b, ", ", end, ") of shape ", shape.str(), " ", e.dtype(),
                                              " are ", want, " bytes, manifest says ", e.nbytes()));
    }
    auto [it, fresh] = r->info_.try_emplace(e.name());
    Info& info = it->second;
    if (fresh) {
      info.dtype = dt, info.shape = shape;
      r->names_.push_back(e.name());
    } else if (info.dtype != dt || !(info.shape == shape)) {
      return absl::DataLossError(absl::StrCat(where, ": ", e.dtype(), " ", shape.str(), " but another entry of the tensor says ",
                                              dtype_name(info.dtype), " ", info.shape.str()));
    }
    info.entries.push_back(i);
  }
  // Every tensor's entries must tile its rows [0, d0) exactly: a gap is a missing shard.
  auto begin_of = [&](int i) { return entries[i].slice_begin_size() ? entries[i].slice_begin(0) : 0; };
  auto end_of = [&](int i, const Info& info) {
    return entries[i].slice_end_size() ? entries[i].slice_end(0) : (info.shape.rank() ? info.shape[0] : 1);
  };
  for (auto& [name, info] : r->info_) {
    std::sort(info.entries.begin(), info.entries.end(), [&](int a, int b) { return begin_of(a) < begin_of(b); });
    const int64_t rows = info.shape.rank() ? info.shape[0] : 1;
    int64_t next = 0;
    for (int i : info.entries) {
      if (begin_of(i) > next) {
        return absl::DataLossError(absl::StrCat(mpath, ": tensor ", name, ": rows [", next, ", ", begin_of(i),
                                                ") are in no file (a missing shard?)"));
      }
      if (begin_of(i) < next) {
        return absl::DataLossError(absl::StrCat(mpath, ": tensor ", name, ": rows [", begin_of(i), ", ", next,
                                                ") are in two entries (the second in ", entries[i].file(), ")"));
      }
      next = end_of(i, info);
    }
    if (next != rows) {
      return absl::DataLossError(absl::StrCat(mpath, ": tensor ", name, ": rows [", next, ", ", rows,
                                              ") are in no file (a missing shard?)"));
    }
  }
  return r;
}

absl::Status CheckpointReader::read_entry(int index, char* dst) {
  const checkpoint::TensorEntry& e = manifest_.tensors(index);
  const std::string where = absl::StrCat(dir_, "/", e.file(), " tensor ", e.name());
  File& f = *files_.at(e.file());
  if (streaming_ != &f) {  // another file: the previous one's buffers go
    if (streaming_ != nullptr) {
      for (File::Slot& s : streaming_->slots) {
        if (s.pending.valid()) (void)s.pending.get();  // the helper writes into s.buf
        s.buf.reset();
        s.index = -1;
      }
    }
    streaming_ = &f;
  }
  uint32_t crc = 0;
  bool direct = f.direct.get() >= 0;
  if (direct) {
    absl::StatusOr<bool> got = read_direct(f, e.offset(), e.nbytes(), dst, &crc, where);
    if (!got.ok()) return got.status();
    direct = *got;  // false: the file system refused O_DIRECT reads; read this file buffered
  }
  if (!direct) {
    // Ask the kernel to read ahead up to 64 MiB past this entry, so the disk works while
    // entries are checked (entries are mostly read in each file's order).
    const uint64_t want = std::min<uint64_t>(f.size, e.offset() + e.nbytes() + (64u << 20));
    if (want > f.prefetched) {
      const uint64_t from = std::max<uint64_t>(f.prefetched, e.offset());
      (void)::posix_fadvise(f.fd.get(), static_cast<off_t>(from), static_cast<off_t>(want - from), POSIX_FADV_WILLNEED);
      f.prefetched = want;
    }
    const int64_t r = read_block(f.fd.get(), dst, e.nbytes(), e.offset());
    if (r < 0) return errno = static_cast<int>(-r), errno_error("cannot read", where);
    if (static_cast<uint64_t>(r) < e.nbytes()) return absl::DataLossError(absl::StrCat(where, ": short read"));
    crc = crc32c(dst, e.nbytes());
  }
  if (crc != e.crc32c()) {
    return absl::DataLossError(absl::StrFormat("%s at offset %d: CRC-32C %08x, manifest says %08x (corrupt data)", where,
                                               e.offset(), crc, e.crc32c()));
  }
  return absl::OkStatus();
}

// Copies bytes [offset, offset + n) of the file into dst through the 8 MiB O_DIRECT blocks and
// CRC-checks them as they go (*crc). Returns false, having read nothing, when the file system
// refuses O_DIRECT reads (the descriptor is then dropped and the caller reads buffered).
absl::StatusOr<bool> CheckpointReader::read_direct(File& f, uint64_t offset, uint64_t n, char* dst, uint32_t* crc,
                                                   const std::string& where) {
  constexpr uint64_t kBlock = File::kBlock;
  for (File::Slot& s : f.slots) {
    if (s.buf == nullptr) s.buf.reset(static_cast<char*>(std::aligned_alloc(4096, kBlock)));
    CMOE_CHECK(s.buf != nullptr, "checkpoint reader: cannot allocate an 8 MiB read buffer");
  }
  auto finish = [](File::Slot& s) {  // waits for a helper's read into s
    const int64_t r = s.pending.get();
    s.len = r < 0 ? 0 : static_cast<uint64_t>(r);
    return r;
  };
  // The slot holding block `index` (read now if no helper has it), after starting reads of the
  // blocks after it into the other slots; nullptr with *err (-errno) on a failed read.
  auto load = [&](int64_t index, int64_t* err) -> File::Slot* {
    File::Slot* cur = nullptr;
    for (File::Slot& s : f.slots)
      if (s.index == index) cur = &s;
    if (cur != nullptr && cur->pending.valid() && (*err = finish(*cur)) < 0) return cur->index = -1, nullptr;
    if (cur == nullptr) {  // not read ahead (the first block, or reads out of order)
      for (File::Slot& s : f.slots) {
        if (s.pending.valid()) finish(s);
        s.index = -1;
      }
      cur = &f.slots[0];
      const int64_t r = read_block(f.direct.get(), cur->buf.get(), kBlock, static_cast<uint64_t>(index) * kBlock);
      if (r < 0) return *err = r, nullptr;
      cur->index = index;
      cur->len = static_cast<uint64_t>(r);
    }
    for (int64_t ahead = index + 1; ahead < index + File::kDepth; ++ahead) {
      const uint64_t off = static_cast<uint64_t>(ahead) * kBlock;
      if (off >= f.size) break;
      bool have = false;
      File::Slot* free_slot = nullptr;
      for (File::Slot& s : f.slots) {
        have = have || s.index == ahead;
        if (s.index < index || s.index >= index + File::kDepth) free_slot = &s;
      }
      if (have || free_slot == nullptr) continue;
      if (free_slot->pending.valid()) finish(*free_slot);
      free_slot->index = ahead;
      free_slot->pending = std::async(std::launch::async, [fd = f.direct.get(), buf = free_slot->buf.get(), off] {
        return read_block(fd, buf, File::kBlock, off);
      });
    }
    return cur;
  };
  uint32_t c = 0;
  for (uint64_t done = 0; done < n;) {
    const uint64_t pos = offset + done;
    const int64_t index = static_cast<int64_t>(pos / kBlock);
    int64_t err = 0;
    const File::Slot* cur = load(index, &err);
    if (cur == nullptr) {
      if (err == -EINVAL && done == 0) {  // O_DIRECT refused: read this file buffered from now on
        for (File::Slot& s : f.slots) {
          if (s.pending.valid()) s.pending.wait();
          s.index = -1;
        }
        f.direct = Fd(-1);
        return false;
      }
      errno = static_cast<int>(-err);
      return errno_error("cannot read", where);
    }
    const uint64_t within = pos - static_cast<uint64_t>(index) * kBlock;
    if (cur->len <= within) return absl::DataLossError(absl::StrCat(where, ": short read"));
    const uint64_t take = std::min<uint64_t>(n - done, cur->len - within);
    // CRC then copy each 256 KiB piece while it is in cache: one pass over memory, not two.
    constexpr uint64_t kPiece = 256 << 10;
    for (uint64_t p = 0; p < take; p += kPiece) {
      const uint64_t len = std::min(kPiece, take - p);
      c = crc32c_extend(c, cur->buf.get() + within + p, len);
      std::memcpy(dst + done + p, cur->buf.get() + within + p, len);
    }
    done += take;
  }
  *crc = c;
  return true;
}

absl::Status CheckpointReader::read_rows(const std::string& name, int64_t row_begin, const Tensor& dst) {
  const Info* info = find(name);
  if (info == nullptr) return absl::NotFoundError(absl::StrCat(dir_, ": checkpoint has no tensor ", name));
  const Shape& g = info->shape;
  bool ok = dst.dtype() == info->dtype && dst.rank() == g.rank() && dst.device().is_cpu();
  for (int d = 1; ok && d < g.rank(); ++d) ok = dst.dim(d) == g[d];
  const int64_t total = g.rank() ? g[0] : 1, want = g.rank() ? dst.dim(0) : 1;
  if (!ok || row_begin < 0 || row_begin + want > total) {
    Shape wanted = dst.shape();
    return absl::InvalidArgumentError(absl::StrCat(dir_, ": tensor ", name, " is ", dtype_name(info->dtype), " ", g.str(),
                                                   "; rows [", row_begin, ", ", row_begin + want, ") as ",
                                                   dtype_name(dst.dtype()), " ", wanted.str(), " do not fit"));
  }
  if (want == 0) return absl::OkStatus();
  const uint64_t row_bytes = total == 0 ? 0 : dst.nbytes() / static_cast<uint64_t>(std::max<int64_t>(want, 1));
  char* out = static_cast<char*>(dst.raw_data());
  std::vector<char> buffer;
  for (int i : info->entries) {
    const checkpoint::TensorEntry& e = manifest_.tensors(i);
    const int64_t b = e.slice_begin_size() ? e.slice_begin(0) : 0, end = e.slice_end_size() ? e.slice_end(0) : total;
    const int64_t lo = std::max(b, row_begin), hi = std::min(end, row_begin + want);
    if (lo >= hi) continue;
    if (b == row_begin && end == row_begin + want) {  // exactly the rows asked for: straight in
      CMOE_RETURN_IF_ERROR(read_entry(i, out));
      continue;
    }
    buffer.resize(e.nbytes());
    CMOE_RETURN_IF_ERROR(read_entry(i, buffer.data()));
    std::memcpy(out + (lo - row_begin) * row_bytes, buffer.data() + (lo - b) * row_bytes, (hi - lo) * row_bytes);
  }
  return absl::OkStatus();
}

absl::StatusOr<Tensor> CheckpointReader::read(const std::string& name) {
  const Info* info = find(name);
  if (info == nullptr) return absl::NotFoundError(absl::StrCat(dir_, ": checkpoint has no tensor ", name));
  Tensor t = Tensor::empty(info->shape, info->dtype);
  CMOE_RETURN_IF_ERROR(read_rows(name, 0, t));
  return t;
}

absl::StatusOr<uint64_t> CheckpointReader::verify_all() {
  uint64_t bytes = 0;
  std::vector<char> buffer;
  for (int i = 0; i < manifest_.tensors_size(); ++i) {
    buffer.resize(manifest_.tensors(i).nbytes());
    CMOE_RETURN_IF_ERROR(read_entry(i, buffer.data()));
    bytes += manifest_.tensors(i).nbytes();
  }
  return bytes;
}

int64_t LoadedCheckpoint::counter(const std::string& name, int64_t fallback) const {
  return counter_of(manifest, name, fallback);
}

absl::StatusOr<LoadedCheckpoint> checkpoint_load(const std::string& dir) {
  CMOE_ASSIGN_OR_RETURN(std::unique_ptr<CheckpointReader> reader, CheckpointReader::open(dir));
  LoadedCheckpoint ck;
  ck.dir = dir;
  ck.manifest = reader->manifest();
  for (const std::string& name : reader->names()) {
    CMOE_ASSIGN_OR_RETURN(ck.tensors[name], reader->read(name));
  }
  return ck;
}

}  // namespace cmoe
