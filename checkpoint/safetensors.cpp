// safetensors.cpp — the safetensors writer and validating reader (layout: safetensors.h).
#include "checkpoint/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>

#include "absl/strings/str_cat.h"
#include "checkpoint/file_io.h"
#include "core/json.h"

namespace cmoe {

namespace {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

constexpr const char* kNames[] = {"F32", "BF16", "I32", "I64", "U16"};  // indexed by DType
static_assert(sizeof(kNames) / sizeof(kNames[0]) == kNumDTypes);

using fileio::errno_error;
using fileio::Fd;
using fileio::write_all;

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

// Validates the header object against a data buffer of `buffer_size` bytes.
absl::StatusOr<std::vector<Entry>> parse_header(const std::string& text, uint64_t buffer_size,
                                                const std::string& source,
                                                std::map<std::string, std::string>& metadata) {
  auto parsed = json::parse(text);
  if (!parsed.ok()) return absl::DataLossError(absl::StrCat(source, ": header: ", parsed.status().message()));
  const json::Value& root = *parsed;
  auto bad = [&](const std::string& name, const std::string& what) {
    return absl::DataLossError(absl::StrCat(source, ": tensor \"", name, "\": ", what));
  };
  if (!root.is_object()) return absl::DataLossError(absl::StrCat(source, ": the header is not a JSON object"));
  std::vector<Entry> entries;
  std::set<std::string> seen;
  for (const auto& [name, v] : root.as_object()) {
    if (!seen.insert(name).second) return bad(name, "the name appears twice in the header");
    if (name == "__metadata__") {
      if (!v.is_object()) return bad(name, "__metadata__ must be an object of strings");
      for (const auto& [k, mv] : v.as_object()) {
        if (!mv.is_string()) return bad(name, absl::StrCat("metadata value of \"", k, "\" is not a string"));
        metadata[k] = mv.as_string();
      }
      continue;
    }
    if (!v.is_object()) return bad(name, "the entry is not an object");
    const json::Value *dt = nullptr, *shape = nullptr, *offsets = nullptr;
    for (const auto& [k, mv] : v.as_object()) {
      if (k == "dtype") dt = &mv;
      else if (k == "shape") shape = &mv;
      else if (k == "data_offsets") offsets = &mv;
      else return bad(name, absl::StrCat("unknown field \"", k, "\""));
    }
    if (!dt || !shape || !offsets) return bad(name, "needs dtype, shape and data_offsets");
    if (!dt->is_string()) return bad(name, "dtype is not a string");
    Entry e{name, DType::kF32, {}, 0, 0};
    const char* const* hit = std::find(std::begin(kNames), std::end(kNames), dt->as_string());
    if (hit == std::end(kNames))
      return bad(name, absl::StrCat("dtype \"", dt->as_string(), "\" is not supported (F32, BF16, I32, I64, U16)"));
    e.dtype = static_cast<DType>(hit - std::begin(kNames));
    if (!shape->is_array() || shape->as_array().size() > static_cast<size_t>(kMaxRank))
      return bad(name, absl::StrCat("shape must be an array of at most ", kMaxRank, " integers"));
    std::vector<int64_t> dims;
    uint64_t numel = 1;
    for (const json::Value& d : shape->as_array()) {
      if (!d.is_int() || d.as_int() < 0) return bad(name, "shape entries must be non-negative integers");
      const int64_t n = d.as_int();
      dims.push_back(n);
      if (n > 0 && numel > (uint64_t{1} << 60) / static_cast<uint64_t>(n)) return bad(name, "shape too large");
      numel *= static_cast<uint64_t>(n);
    }
    e.shape = Shape(std::span<const int64_t>(dims));
    if (!offsets->is_array() || offsets->as_array().size() != 2 || !offsets->as_array()[0].is_int() ||
        !offsets->as_array()[1].is_int() || offsets->as_array()[0].as_int() < 0 ||
        offsets->as_array()[1].as_int() < offsets->as_array()[0].as_int())
      return bad(name, "data_offsets must be [begin, end] with 0 <= begin <= end");
    e.begin = static_cast<uint64_t>(offsets->as_array()[0].as_int());
    e.end = static_cast<uint64_t>(offsets->as_array()[1].as_int());
    const uint64_t want = numel * dtype_size(e.dtype);
    if (e.end - e.begin != want)
      return bad(name, absl::StrCat("data_offsets [", e.begin, ", ", e.end, ") hold ", e.end - e.begin, " bytes but ",
                                    dt->as_string(), shape->as_array().size() ? "" : " scalar", " of ", numel, " elements needs ", want));
    entries.push_back(std::move(e));
  }
  // The tensors must tile the buffer exactly, as the reference implementation requires.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t at = 0;
  for (const Entry& e : entries) {
    if (e.begin != at)
      return bad(e.name, absl::StrCat("data starts at byte ", e.begin, " of the buffer, expected ", at,
                                      e.begin < at ? " (overlaps the previous tensor)" : " (a gap before it)"));
    at = e.end;
  }
  if (at != buffer_size)
    return absl::DataLossError(absl::StrCat(source, ": the tensors cover ", at, " bytes of a ", buffer_size,
                                            "-byte data buffer (file truncated or trailing bytes)"));
  return entries;
}

}  // namespace

absl::Status safetensors_write(const std::string& path, const std::vector<NamedTensor>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  // The header: {"__metadata__": {...}, NAME: {"dtype", "shape", "data_offsets"}, ...} in
  // tensor order, compact, so the same tensors always give the same bytes.
  json::Value h = json::Value::object();
  if (!metadata.empty()) {
    json::Value meta = json::Value::object();
    for (const auto& [k, v] : metadata) meta.set(k, json::Value::string(v));
    h.set("__metadata__", std::move(meta));
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const NamedTensor& nt : tensors) {
    CMOE_CHECK(!nt.name.empty() && nt.name != "__metadata__", "safetensors: bad tensor name \"", nt.name, "\"");
    CMOE_CHECK(names.insert(nt.name).second, "safetensors: tensor \"", nt.name, "\" given twice");
    json::Value shape = json::Value::array(), offsets = json::Value::array();
    for (int64_t d : nt.tensor.shape().dims()) shape.push_back(json::Value::integer(d));
    offsets.push_back(json::Value::integer(static_cast<int64_t>(offset)));
    offsets.push_back(json::Value::integer(static_cast<int64_t>(offset + nt.tensor.nbytes())));
    json::Value e = json::Value::object();
    e.set("dtype", json::Value::string(kNames[static_cast<int>(nt.tensor.dtype())]));
    e.set("shape", std::move(shape));
    e.set("data_offsets", std::move(offsets));
    h.set(nt.name, std::move(e));
    offset += nt.tensor.nbytes();
  }
  std::string header = json::serialize(h);
  header.append((8 - header.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  const uint64_t n = header.size();

  const std::string tmp = path + ".tmp";
  {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0) return errno_error("cannot create", tmp);
    CMOE_RETURN_IF_ERROR(write_all(fd.get(), &n, 8, tmp));
    CMOE_RETURN_IF_ERROR(write_all(fd.get(), header.data(), header.size(), tmp));
    for (const NamedTensor& nt : tensors) {
      const Tensor host = nt.tensor.device().is_cpu() ? nt.tensor : nt.tensor.to(kCPU);
      CMOE_RETURN_IF_ERROR(write_all(fd.get(), host.raw_data(), host.nbytes(), tmp));
    }
    if (::fsync(fd.get()) != 0) return errno_error("cannot fsync", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) return errno_error("cannot rename to", path);
  return absl::OkStatus();
}

absl::StatusOr<SafetensorsFile> safetensors_read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(path, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot stat ", path, ": ", ec.message()));
  if (size < 8) return absl::DataLossError(absl::StrCat(path, ": ", size, " bytes is too short for a safetensors file"));
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  if (n > kSafetensorsMaxHeader)
    return absl::DataLossError(absl::StrCat(path, ": header length ", n, " exceeds the limit of ", kSafetensorsMaxHeader));
  if (n > size - 8)
    return absl::DataLossError(absl::StrCat(path, ": header length ", n, " runs past the end of the ", size, "-byte file"));
  std::string header(n, '\0');
  if (!in.read(header.data(), static_cast<std::streamsize>(n)))
    return absl::DataLossError(absl::StrCat(path, ": cannot read the ", n, "-byte header"));
  SafetensorsFile out;
  CMOE_ASSIGN_OR_RETURN(std::vector<Entry> entries, parse_header(header, size - 8 - n, path, out.metadata));
  for (const Entry& e : entries) {  // sorted by offset: one sequential pass over the file
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (t.nbytes() > 0 && !in.read(static_cast<char*>(t.raw_data()), static_cast<std::streamsize>(t.nbytes())))
      return absl::DataLossError(absl::StrCat(path, ": cannot read tensor \"", e.name, "\" at byte ", 8 + n + e.begin));
    out.tensors.push_back({e.name, std::move(t)});
  }
  return out;
}

}  // namespace cmoe
