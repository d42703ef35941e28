// indexed_dataset.cpp — see indexed_dataset.h for the byte layouts.
#include "data/indexed_dataset.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <sstream>
#include <type_traits>

#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"
#include "core/check.h"

namespace cmoe::data {

namespace {

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <typename T>
void store(std::vector<uint8_t>* out, T v) {
  const size_t at = out->size();
  out->resize(at + sizeof(T));
  std::memcpy(out->data() + at, &v, sizeof(T));
}

// "file: at byte N: what" — the one shape of every format error in this file.
absl::Status format_error(const std::string& file, uint64_t offset, const std::string& what) {
  return absl::DataLossError(absl::StrCat(file, ": at byte ", offset, ": ", what));
}

std::string hex_bytes(const uint8_t* p, size_t n) {
  static const char* kHex = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    if (i) s += ' ';
    s += kHex[p[i] >> 4];
    s += kHex[p[i] & 15];
  }
  return s;
}

bool valid_dtype_code(uint8_t c) { return c == 1 || c == 2 || c == 3 || c == 4 || c == 5 || c == 8; }

std::string errno_text() { return std::strerror(errno); }

}  // namespace

size_t token_dtype_size(TokenDType t) {
  switch (t) {
    case TokenDType::kU8: return 1;
    case TokenDType::kI8: return 1;
    case TokenDType::kI16: return 2;
    case TokenDType::kI32: return 4;
    case TokenDType::kI64: return 8;
    case TokenDType::kU16: return 2;
  }
  return 0;
}

const char* token_dtype_name(TokenDType t) {
  switch (t) {
    case TokenDType::kU8: return "uint8";
    case TokenDType::kI8: return "int8";
    case TokenDType::kI16: return "int16";
    case TokenDType::kI32: return "int32";
    case TokenDType::kI64: return "int64";
    case TokenDType::kU16: return "uint16";
  }
  return "?";
}

TokenDType token_dtype_for_vocab(int64_t vocab_size) {
  return vocab_size < 65500 ? TokenDType::kU16 : TokenDType::kI32;
}

// ---------------------------------------------------------------------------------------------
// MappedFile

absl::StatusOr<MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", errno_text()));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    std::string err = errno_text();
    ::close(fd);
    return absl::InternalError(absl::StrCat(path, ": cannot stat: ", err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  MappedFile f;
  f.path_ = path;
  f.size_ = static_cast<size_t>(st.st_size);
  if (f.size_ > 0) {
    void* p = ::mmap(nullptr, f.size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      std::string err = errno_text();
      ::close(fd);
      return absl::InternalError(absl::StrCat(path, ": mmap of ", f.size_, " bytes failed: ", err));
    }
    f.data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping keeps the file alive
  return f;
}

MappedFile::MappedFile(MappedFile&& o) noexcept : data_(o.data_), size_(o.size_), path_(std::move(o.path_)) {
  o.data_ = nullptr;
  o.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    reset();
    data_ = o.data_;
    size_ = o.size_;
    path_ = std::move(o.path_);
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

MappedFile::~MappedFile() { reset(); }

void MappedFile::reset() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

// ---------------------------------------------------------------------------------------------
// .idx validation

absl::StatusOr<IndexLayout> index_parse(const uint8_t* idx, size_t size, size_t bin_size,
                                        const std::string& idx_name, const std::string& bin_name) {
  static constexpr uint8_t kOldMagic[8] = {'T', 'N', 'T', 'I', 'D', 'X', 0, 0};
  if (size >= 8 && std::memcmp(idx, kOldMagic, 8) == 0) {
    return format_error(idx_name, 0,
                        "found the old TNTIDX indexed-dataset format, which cmoe does not read; "
                        "expected MMIDIDX (re-run Megatron's preprocess_data.py, or cmoe preprocess)");
  }
  const size_t magic_have = std::min(size, sizeof(kIdxMagic));
  if (magic_have > 0 && std::memcmp(idx, kIdxMagic, magic_have) != 0) {
    return format_error(idx_name, 0,
                        absl::StrCat("found magic bytes [", hex_bytes(idx, magic_have),
                                     "], expected [4d 4d 49 44 49 44 58 00 00] (\"MMIDIDX\\0\\0\"): "
                                     "not a Megatron .idx file"));
  }
  if (size < kIdxHeaderBytes) {
    return format_error(idx_name, size,
                        absl::StrCat("file ends after ", size, " bytes; expected a ", kIdxHeaderBytes,
                                     "-byte header (truncated .idx)"));
  }
  const uint64_t version = load<uint64_t>(idx + 9);
  if (version != kIdxVersion) {
    return format_error(idx_name, 9, absl::StrCat("found version ", version, ", expected ", kIdxVersion));
  }
  const uint8_t code = idx[17];
  if (code == 6 || code == 7) {
    return format_error(idx_name, 17,
                        absl::StrCat("found dtype code ", int{code},
                                     " (a floating-point type whose meaning differs between Megatron and "
                                     "GPT-NeoX), expected token dtype 1, 2, 3, 4, 5 or 8"));
  }
  if (!valid_dtype_code(code)) {
    return format_error(idx_name, 17,
                        absl::StrCat("found dtype code ", int{code}, ", expected 1 (uint8), 2 (int8), "
                                     "3 (int16), 4 (int32), 5 (int64) or 8 (uint16)"));
  }
  IndexLayout L;
  L.dtype = static_cast<TokenDType>(code);
  const uint64_t S = load<uint64_t>(idx + 18);
  const uint64_t D1 = load<uint64_t>(idx + 26);
  // 34 + 12S + 8 D1 must equal the size; compare without overflow.
  const uint64_t body = size - kIdxHeaderBytes;
  const bool fits = S <= body / 12 && D1 <= (body - 12 * S) / 8;
  if (!fits || 12 * S + 8 * D1 != body) {
    // Exact in 128 bits: a corrupt S or D1 can be near 2^64.
    std::ostringstream need;
    need << absl::uint128(kIdxHeaderBytes) + absl::uint128(S) * 12 + absl::uint128(D1) * 8;
    return format_error(idx_name, 18,
                        absl::StrCat("header says S = ", S, " sequences and D1 = ", D1,
                                     " document-index entries, which need a file of 34 + 12*S + 8*D1 = ", need.str(),
                                     " bytes; found ", size, " bytes (truncated, extended, or a multimodal .idx)"));
  }
  if (D1 == 0) {
    return format_error(idx_name, 26, "found D1 = 0, expected at least 1 (the document index starts with 0)");
  }
  L.num_sequences = static_cast<int64_t>(S);
  L.doc_index_length = static_cast<int64_t>(D1);
  L.lengths_offset = kIdxHeaderBytes;
  L.pointers_offset = kIdxHeaderBytes + 4 * S;
  L.doc_index_offset = kIdxHeaderBytes + 12 * S;

  // One pass over lengths and pointers: each sequence inside the .bin, at a multiple of the
  // item size, right where the previous one ends (every writer — Megatron, GPT-NeoX, cmoe —
  // lays sequences back to back from byte 0), and the last one ending where the .bin ends. A
  // dtype code that disagrees with the data, a moved pointer or a .bin with bytes missing or
  // extra fails one of these; the .bin's contents are never read here.
  const uint64_t itemsize = token_dtype_size(L.dtype);
  const std::string dtype_text = absl::StrCat("dtype code ", int{code}, " = ", token_dtype_name(L.dtype), ", ",
                                              itemsize, " byte", itemsize == 1 ? "" : "s", " per token");
  int64_t tokens = 0;
  uint64_t next = 0;  // where sequence i must start: the end of sequence i-1
  for (uint64_t i = 0; i < S; ++i) {
    const int32_t len = load<int32_t>(idx + L.lengths_offset + 4 * i);
    if (len < 0) {
      return format_error(idx_name, L.lengths_offset + 4 * i,
                          absl::StrCat("sequence ", i, " has length ", len, ", expected >= 0"));
    }
    const size_t ptr_at = L.pointers_offset + 8 * i;
    const int64_t ptr = load<int64_t>(idx + ptr_at);
    const uint64_t nbytes = static_cast<uint64_t>(len) * itemsize;
    if (ptr < 0 || static_cast<uint64_t>(ptr) > bin_size || nbytes > bin_size - static_cast<uint64_t>(ptr)) {
      return format_error(idx_name, ptr_at,
                          absl::StrCat("sequence ", i, " points at bytes [", ptr, ", ", ptr, " + ", nbytes,
                                       ") of ", bin_name, ", expected a range inside its ", bin_size,
                                       " bytes (truncated .bin or corrupt pointer; ", dtype_text, ")"));
    }
    if (static_cast<uint64_t>(ptr) % itemsize != 0) {
      return format_error(idx_name, ptr_at,
                          absl::StrCat("sequence ", i, " points at byte ", ptr, " of ", bin_name,
                                       ", which is not a multiple of the token size ", itemsize, " (", dtype_text,
                                       "; a corrupt pointer, or the dtype code disagrees with the data)"));
    }
    if (static_cast<uint64_t>(ptr) != next) {
      return format_error(idx_name, ptr_at,
                          absl::StrCat("sequence ", i, " starts at byte ", ptr, " of ", bin_name, ", expected ", next,
                                       i == 0 ? " (the first sequence starts the .bin)"
                                              : absl::StrCat(" where sequence ", i - 1, " ends"),
                                       ": pointers must be contiguous (", dtype_text,
                                       "; a corrupt pointer or length, or the dtype code disagrees with the data)"));
    }
    next += nbytes;
    tokens += len;
  }
  if (next != bin_size) {
    return format_error(bin_name, next,
                        absl::StrCat("the ", S, " sequences of ", idx_name, " end at byte ", next, " (", tokens,
                                     " tokens, ", dtype_text, "), but the file has ", bin_size,
                                     " bytes (", bin_size - next, " more): the dtype code disagrees with the data, or the .bin is not this "
                                     ".idx's"));
  }
  L.num_tokens = tokens;
  int64_t prev = 0;
  for (uint64_t j = 0; j < D1; ++j) {
    const size_t at = L.doc_index_offset + 8 * j;
    const int64_t d = load<int64_t>(idx + at);
    if (j == 0 && d != 0) {
      return format_error(idx_name, at, absl::StrCat("document index starts at ", d, ", expected 0"));
    }
    if (d < prev || d > static_cast<int64_t>(S)) {
      return format_error(idx_name, at,
                          absl::StrCat("document index entry ", j, " is ", d, ", expected a value in [", prev,
                                       ", ", S, "] (non-decreasing, at most S)"));
    }
    prev = d;
  }
  if (prev != static_cast<int64_t>(S)) {
    return format_error(idx_name, L.doc_index_offset + 8 * (D1 - 1),
                        absl::StrCat("document index ends at ", prev, ", expected S = ", S));
  }
  return L;
}

// ---------------------------------------------------------------------------------------------
// IndexedDataset

absl::StatusOr<IndexedDataset> IndexedDataset::open(const std::string& prefix) {
  IndexedDataset ds;
  ds.prefix_ = prefix;
  CMOE_ASSIGN_OR_RETURN(ds.idx_, MappedFile::open(prefix + ".idx"));
  CMOE_ASSIGN_OR_RETURN(ds.bin_, MappedFile::open(prefix + ".bin"));
  CMOE_ASSIGN_OR_RETURN(ds.layout_, index_parse(ds.idx_.data(), ds.idx_.size(), ds.bin_.size(),
                                                ds.idx_.path(), ds.bin_.path()));
  return ds;
}

int32_t IndexedDataset::sequence_length(int64_t i) const {
  CMOE_CHECK(i >= 0 && i < layout_.num_sequences, "sequence ", i, " of ", layout_.num_sequences);
  return load<int32_t>(idx_.data() + layout_.lengths_offset + 4 * i);
}

int64_t IndexedDataset::sequence_pointer(int64_t i) const {
  CMOE_CHECK(i >= 0 && i < layout_.num_sequences, "sequence ", i, " of ", layout_.num_sequences);
  return load<int64_t>(idx_.data() + layout_.pointers_offset + 8 * i);
}

int64_t IndexedDataset::document_index(int64_t j) const {
  CMOE_CHECK(j >= 0 && j < layout_.doc_index_length, "document index entry ", j, " of ", layout_.doc_index_length);
  return load<int64_t>(idx_.data() + layout_.doc_index_offset + 8 * j);
}

std::vector<int32_t> IndexedDataset::sequence_lengths() const {
  std::vector<int32_t> out(static_cast<size_t>(layout_.num_sequences));
  if (!out.empty()) std::memcpy(out.data(), idx_.data() + layout_.lengths_offset, 4 * out.size());
  return out;
}

namespace {

// dst[k] = int32(src element k) for an itemsize-strided little-endian array; returns the index
// of the first value that does not fit int32, or -1.
template <typename T>
int64_t convert_tokens(const uint8_t* src, int64_t count, int32_t* dst) {
  for (int64_t k = 0; k < count; ++k) {
    const T v = load<T>(src + k * static_cast<int64_t>(sizeof(T)));
    if constexpr (std::is_same_v<T, int64_t>) {
      if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) return k;
    } else if constexpr (std::is_same_v<T, uint32_t>) {
      if (v > static_cast<uint32_t>(std::numeric_limits<int32_t>::max())) return k;
    }
    dst[k] = static_cast<int32_t>(v);
  }
  return -1;
}

int64_t convert_any(TokenDType t, const uint8_t* src, int64_t count, int32_t* dst) {
  switch (t) {
    case TokenDType::kU8: return convert_tokens<uint8_t>(src, count, dst);
    case TokenDType::kI8: return convert_tokens<int8_t>(src, count, dst);
    case TokenDType::kI16: return convert_tokens<int16_t>(src, count, dst);
    case TokenDType::kI32: return convert_tokens<int32_t>(src, count, dst);
    case TokenDType::kI64: return convert_tokens<int64_t>(src, count, dst);
    case TokenDType::kU16: return convert_tokens<uint16_t>(src, count, dst);
  }
  return -1;
}

}  // namespace

absl::Status IndexedDataset::read(int64_t i, int64_t offset, int64_t count, int32_t* out) const {
  if (i < 0 || i >= layout_.num_sequences) {
    return absl::OutOfRangeError(absl::StrCat(prefix_, ": sequence ", i, " requested, the dataset has ",
                                              layout_.num_sequences));
  }
  const int64_t len = sequence_length(i);
  if (offset < 0 || count < 0 || offset > len || count > len - offset) {
    return absl::OutOfRangeError(absl::StrCat(prefix_, ": tokens [", offset, ", ", offset, " + ", count,
                                              ") requested from sequence ", i, " of length ", len));
  }
  const int64_t itemsize = static_cast<int64_t>(token_dtype_size(layout_.dtype));
  const int64_t start = sequence_pointer(i) + offset * itemsize;
  const int64_t bad = convert_any(layout_.dtype, bin_.data() + start, count, out);
  if (bad >= 0) {
    return format_error(bin_.path(), static_cast<uint64_t>(start + bad * itemsize),
                        "found a token id that does not fit int32, expected an id in [0, 2^31)");
  }
  return absl::OkStatus();
}

std::string IndexedDataset::token_location(int64_t i, int64_t offset) const {
  const int64_t itemsize = static_cast<int64_t>(token_dtype_size(layout_.dtype));
  return absl::StrCat(bin_.path(), ": at byte ", sequence_pointer(i) + offset * itemsize);
}

absl::Status IndexedDataset::check_vocab(int64_t vocab_size) const {
  std::vector<int32_t> buf;
  const int64_t itemsize = static_cast<int64_t>(token_dtype_size(layout_.dtype));
  for (int64_t i = 0; i < layout_.num_sequences; ++i) {
    const int64_t len = sequence_length(i);
    buf.resize(static_cast<size_t>(len));
    CMOE_RETURN_IF_ERROR(read(i, 0, len, buf.data()));
    for (int64_t k = 0; k < len; ++k) {
      if (buf[k] < 0 || buf[k] >= vocab_size) {
        return format_error(bin_.path(), static_cast<uint64_t>(sequence_pointer(i) + k * itemsize),
                            absl::StrCat("found token id ", buf[k], " (sequence ", i, ", position ", k,
                                         "), expected an id in [0, ", vocab_size, ")"));
      }
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// IndexedDatasetWriter

absl::StatusOr<IndexedDatasetWriter> IndexedDatasetWriter::create(const std::string& prefix, TokenDType dtype) {
  IndexedDatasetWriter w;
  w.prefix_ = prefix;
  w.dtype_ = dtype;
  const std::string tmp = prefix + ".bin.partial";
  w.bin_ = std::fopen(tmp.c_str(), "wb");
  if (w.bin_ == nullptr) return absl::InternalError(absl::StrCat(tmp, ": cannot create: ", errno_text()));
  return w;
}

IndexedDatasetWriter::IndexedDatasetWriter(IndexedDatasetWriter&& o) noexcept
    : prefix_(std::move(o.prefix_)),
      dtype_(o.dtype_),
      bin_(o.bin_),
      lengths_(std::move(o.lengths_)),
      doc_index_(std::move(o.doc_index_)),
      num_tokens_(o.num_tokens_),
      finished_(o.finished_),
      buf_(std::move(o.buf_)) {
  o.bin_ = nullptr;
  o.finished_ = true;  // the moved-from writer owns nothing to clean up
}

IndexedDatasetWriter::~IndexedDatasetWriter() {
  if (finished_) return;
  if (bin_ != nullptr) std::fclose(bin_);
  std::remove((prefix_ + ".bin.partial").c_str());
  std::remove((prefix_ + ".idx.partial").c_str());
}

absl::Status IndexedDatasetWriter::add_sequence(std::span<const int32_t> tokens) {
  CMOE_CHECK(!finished_ && bin_ != nullptr, "add_sequence after finish()");
  if (tokens.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError(absl::StrCat(prefix_, ": a sequence of ", tokens.size(),
                                                   " tokens does not fit the int32 length field"));
  }
  int64_t lo = 0, hi = 0;
  switch (dtype_) {
    case TokenDType::kU8: hi = 255; break;
    case TokenDType::kI8: lo = -128, hi = 127; break;
    case TokenDType::kI16: lo = -32768, hi = 32767; break;
    case TokenDType::kU16: hi = 65535; break;
    case TokenDType::kI32:
    case TokenDType::kI64: lo = std::numeric_limits<int32_t>::min(), hi = std::numeric_limits<int32_t>::max(); break;
  }
  buf_.clear();
  buf_.reserve(tokens.size() * token_dtype_size(dtype_));
  for (size_t k = 0; k < tokens.size(); ++k) {
    const int32_t v = tokens[k];
    if (v < lo || v > hi) {
      return absl::InvalidArgumentError(absl::StrCat(prefix_, ": token id ", v, " at position ", k, " of sequence ",
                                                     lengths_.size(), " does not fit ", token_dtype_name(dtype_)));
    }
    switch (dtype_) {
      case TokenDType::kU8: store<uint8_t>(&buf_, static_cast<uint8_t>(v)); break;
      case TokenDType::kI8: store<int8_t>(&buf_, static_cast<int8_t>(v)); break;
      case TokenDType::kI16: store<int16_t>(&buf_, static_cast<int16_t>(v)); break;
      case TokenDType::kU16: store<uint16_t>(&buf_, static_cast<uint16_t>(v)); break;
      case TokenDType::kI32: store<int32_t>(&buf_, v); break;
      case TokenDType::kI64: store<int64_t>(&buf_, v); break;
    }
  }
  if (!buf_.empty() && std::fwrite(buf_.data(), 1, buf_.size(), bin_) != buf_.size()) {
    return absl::InternalError(absl::StrCat(prefix_, ".bin.partial: write failed: ", errno_text()));
  }
  lengths_.push_back(static_cast<int32_t>(tokens.size()));
  num_tokens_ += static_cast<int64_t>(tokens.size());
  return absl::OkStatus();
}

void IndexedDatasetWriter::end_document() { doc_index_.push_back(static_cast<int64_t>(lengths_.size())); }

absl::Status IndexedDatasetWriter::add_document(std::span<const int32_t> tokens) {
  CMOE_RETURN_IF_ERROR(add_sequence(tokens));
  end_document();
  return absl::OkStatus();
}

namespace {

absl::Status flush_and_close(std::FILE* f, const std::string& name) {
  bool ok = std::fflush(f) == 0;
  ok = ok && ::fsync(::fileno(f)) == 0;
  const std::string err = ok ? "" : errno_text();
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) return absl::InternalError(absl::StrCat(name, ": write failed: ", err.empty() ? errno_text() : err));
  return absl::OkStatus();
}

}  // namespace

absl::Status IndexedDatasetWriter::finish() {
  CMOE_CHECK(!finished_ && bin_ != nullptr, "finish() called twice");
  const std::string bin_tmp = prefix_ + ".bin.partial", idx_tmp = prefix_ + ".idx.partial";
  std::FILE* bin = bin_;
  bin_ = nullptr;
  CMOE_RETURN_IF_ERROR(flush_and_close(bin, bin_tmp));

  const uint64_t S = lengths_.size(), D1 = doc_index_.size();
  std::vector<uint8_t> idx;
  idx.reserve(kIdxHeaderBytes + 12 * S + 8 * D1);
  idx.insert(idx.end(), kIdxMagic, kIdxMagic + sizeof(kIdxMagic));
  store<uint64_t>(&idx, kIdxVersion);
  store<uint8_t>(&idx, static_cast<uint8_t>(dtype_));
  store<uint64_t>(&idx, S);
  store<uint64_t>(&idx, D1);
  for (int32_t len : lengths_) store<int32_t>(&idx, len);
  int64_t ptr = 0;
  for (int32_t len : lengths_) {
    store<int64_t>(&idx, ptr);
    ptr += static_cast<int64_t>(len) * static_cast<int64_t>(token_dtype_size(dtype_));
  }
  for (int64_t d : doc_index_) store<int64_t>(&idx, d);

  std::FILE* f = std::fopen(idx_tmp.c_str(), "wb");
  if (f == nullptr) return absl::InternalError(absl::StrCat(idx_tmp, ": cannot create: ", errno_text()));
  if (std::fwrite(idx.data(), 1, idx.size(), f) != idx.size()) {
    std::fclose(f);
    return absl::InternalError(absl::StrCat(idx_tmp, ": write failed: ", errno_text()));
  }
  CMOE_RETURN_IF_ERROR(flush_and_close(f, idx_tmp));
  // .bin first: an .idx under its final name always describes a complete .bin.
  if (std::rename(bin_tmp.c_str(), (prefix_ + ".bin").c_str()) != 0 ||
      std::rename(idx_tmp.c_str(), (prefix_ + ".idx").c_str()) != 0) {
    return absl::InternalError(absl::StrCat(prefix_, ": renaming the finished files into place failed: ", errno_text()));
  }
  finished_ = true;
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// LlmcShard

absl::StatusOr<LlmcShard> LlmcShard::open(const std::string& path) {
  LlmcShard s;
  CMOE_ASSIGN_OR_RETURN(s.file_, MappedFile::open(path));
  const uint8_t* p = s.file_.data();
  const size_t size = s.file_.size();
  if (size < kHeaderBytes) {
    return format_error(path, size, absl::StrCat("file ends after ", size, " bytes; expected a ", kHeaderBytes,
                                                 "-byte llm.c header (truncated shard)"));
  }
  const int32_t magic = load<int32_t>(p), version = load<int32_t>(p + 4), n = load<int32_t>(p + 8);
  int32_t want_version = 0;
  size_t itemsize = 0;
  if (magic == kGpt2Magic) {
    s.kind_ = Kind::kGpt2, want_version = 1, itemsize = 2;
  } else if (magic == kLlama3Magic) {
    s.kind_ = Kind::kLlama3, want_version = 7, itemsize = 4;
  } else {
    return format_error(path, 0, absl::StrCat("found magic ", magic, ", expected ", kGpt2Magic, " (llm.c GPT-2 shard) or ",
                                              kLlama3Magic, " (llm.c Llama-3 shard)"));
  }
  if (version != want_version) {
    return format_error(path, 4, absl::StrCat("found version ", version, ", expected ", want_version, " for magic ", magic));
  }
  if (n < 0) return format_error(path, 8, absl::StrCat("found token count ", n, ", expected >= 0"));
  const uint64_t want = kHeaderBytes + static_cast<uint64_t>(n) * itemsize;
  if (size != want) {
    return format_error(path, 8, absl::StrCat("header says ", n, " tokens of ", itemsize, " bytes, which need a file of ",
                                              want, " bytes; found ", size, " bytes"));
  }
  s.version_ = version;
  s.num_tokens_ = n;
  return s;
}

absl::Status LlmcShard::read(int64_t offset, int64_t count, int32_t* out) const {
  if (offset < 0 || count < 0 || offset > num_tokens_ || count > num_tokens_ - offset) {
    return absl::OutOfRangeError(absl::StrCat(path(), ": tokens [", offset, ", ", offset, " + ", count,
                                              ") requested, the shard has ", num_tokens_));
  }
  const uint8_t* base = file_.data() + kHeaderBytes;
  if (kind_ == Kind::kGpt2) {
    convert_tokens<uint16_t>(base + 2 * offset, count, out);
    return absl::OkStatus();
  }
  const int64_t bad = convert_tokens<uint32_t>(base + 4 * offset, count, out);
  if (bad >= 0) {
    return format_error(path(), kHeaderBytes + 4 * static_cast<uint64_t>(offset + bad),
                        "found a token id above 2^31-1, expected a valid Llama-3 id");
  }
  return absl::OkStatus();
}

}  // namespace cmoe::data
