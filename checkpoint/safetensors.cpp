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

namespace cmoe {

namespace {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

constexpr const char* kNames[] = {"F32", "BF16", "I32", "I64", "U16"};  // indexed by DType
static_assert(sizeof(kNames) / sizeof(kNames[0]) == kNumDTypes);

// ---- a small strict JSON reader: objects, arrays, strings and integers ----------------------

struct Json {
  enum Kind { kObject, kArray, kString, kInt, kOther } kind = kOther;
  std::vector<std::pair<std::string, Json>> members;  // object, in file order
  std::vector<Json> items;                            // array
  std::string str;                                    // string
  int64_t num = 0;                                    // integer
};

class JsonParser {
 public:
  JsonParser(const std::string& text, const std::string& source) : s_(text), source_(source) {}

  absl::StatusOr<Json> parse_document() {
    CMOE_ASSIGN_OR_RETURN(Json v, parse_value(0));
    skip_ws();
    if (pos_ != s_.size()) return error("trailing characters after the JSON value");
    return v;
  }

 private:
  absl::Status error(const std::string& what) const {
    return absl::DataLossError(absl::StrCat(source_, ": invalid safetensors header: ", what, " at header byte ", pos_));
  }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  bool eat(char c) {
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == c) return ++pos_, true;
    return false;
  }

  absl::StatusOr<Json> parse_value(int depth) {
    if (depth > 16) return error("nesting deeper than 16");
    skip_ws();
    if (pos_ >= s_.size()) return error("unexpected end");
    Json v;
    const char c = s_[pos_];
    if (c == '{') {
      ++pos_;
      v.kind = Json::kObject;
      if (eat('}')) return v;
      do {
        skip_ws();
        CMOE_ASSIGN_OR_RETURN(std::string key, parse_string());
        if (!eat(':')) return error("expected ':'");
        CMOE_ASSIGN_OR_RETURN(Json member, parse_value(depth + 1));
        v.members.emplace_back(std::move(key), std::move(member));
      } while (eat(','));
      if (!eat('}')) return error("expected ',' or '}'");
    } else if (c == '[') {
      ++pos_;
      v.kind = Json::kArray;
      if (eat(']')) return v;
      do {
        CMOE_ASSIGN_OR_RETURN(Json item, parse_value(depth + 1));
        v.items.push_back(std::move(item));
      } while (eat(','));
      if (!eat(']')) return error("expected ',' or ']'");
    } else if (c == '"') {
      v.kind = Json::kString;
      CMOE_ASSIGN_OR_RETURN(v.str, parse_string());
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      CMOE_ASSIGN_OR_RETURN(v.num, parse_int());
      v.kind = Json::kInt;
    } else {
      // true/false/null and anything else: valid JSON perhaps, but never valid where we read.
      for (const char* lit : {"true", "false", "null"}) {
        if (s_.compare(pos_, std::strlen(lit), lit) == 0) {
          pos_ += std::strlen(lit);
          return v;
        }
      }
      return error(absl::StrCat("unexpected character '", std::string(1, c), "'"));
    }
    return v;
  }

  absl::StatusOr<int64_t> parse_int() {
    const size_t start = pos_;
    bool neg = s_[pos_] == '-';
    if (neg) ++pos_;
    if (pos_ >= s_.size() || s_[pos_] < '0' || s_[pos_] > '9') return error("expected a digit");
    if (s_[pos_] == '0' && pos_ + 1 < s_.size() && s_[pos_ + 1] >= '0' && s_[pos_ + 1] <= '9')
      return error("leading zero in a number");
    uint64_t v = 0;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      if (v > (uint64_t{1} << 62)) return error("integer too large");
      v = v * 10 + static_cast<uint64_t>(s_[pos_++] - '0');
    }
    if (pos_ < s_.size() && (s_[pos_] == '.' || s_[pos_] == 'e' || s_[pos_] == 'E')) {
      pos_ = start;
      return error("expected an integer, found a fraction or exponent");
    }
    return neg ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
  }

  void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xc0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xe0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }

  absl::StatusOr<uint32_t> parse_hex4() {
    if (pos_ + 4 > s_.size()) return error("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = s_[pos_++];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= static_cast<uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f') v |= static_cast<uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') v |= static_cast<uint32_t>(h - 'A' + 10);
      else return error("bad hex digit in \\u escape");
    }
    return v;
  }

  absl::StatusOr<std::string> parse_string() {
    if (pos_ >= s_.size() || s_[pos_] != '"') return error("expected a string");
    ++pos_;
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) return error("unterminated string");
      const unsigned char c = static_cast<unsigned char>(s_[pos_++]);
      if (c == '"') return out;
      if (c < 0x20) return error("control character in a string");
      if (c != '\\') {
        out += static_cast<char>(c);
        continue;
      }
      if (pos_ >= s_.size()) return error("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          CMOE_ASSIGN_OR_RETURN(uint32_t cp, parse_hex4());
          if (cp >= 0xd800 && cp < 0xdc00) {  // a surrogate pair
            if (pos_ + 2 > s_.size() || s_[pos_] != '\\' || s_[pos_ + 1] != 'u') return error("lone surrogate");
            pos_ += 2;
            CMOE_ASSIGN_OR_RETURN(uint32_t lo, parse_hex4());
            if (lo < 0xdc00 || lo >= 0xe000) return error("bad low surrogate");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          } else if (cp >= 0xdc00 && cp < 0xe000) {
            return error("lone surrogate");
          }
          append_utf8(out, cp);
          break;
        }
        default: return error(absl::StrCat("bad escape '\\", std::string(1, e), "'"));
      }
    }
  }

  const std::string& s_;
  const std::string& source_;
  size_t pos_ = 0;
};

std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

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
  JsonParser parser(text, source);
  CMOE_ASSIGN_OR_RETURN(Json root, parser.parse_document());
  auto bad = [&](const std::string& name, const std::string& what) {
    return absl::DataLossError(absl::StrCat(source, ": tensor \"", name, "\": ", what));
  };
  if (root.kind != Json::kObject) return absl::DataLossError(absl::StrCat(source, ": the header is not a JSON object"));
  std::vector<Entry> entries;
  std::set<std::string> seen;
  for (const auto& [name, v] : root.members) {
    if (!seen.insert(name).second) return bad(name, "the name appears twice in the header");
    if (name == "__metadata__") {
      if (v.kind != Json::kObject) return bad(name, "__metadata__ must be an object of strings");
      for (const auto& [k, mv] : v.members) {
        if (mv.kind != Json::kString) return bad(name, absl::StrCat("metadata value of \"", k, "\" is not a string"));
        metadata[k] = mv.str;
      }
      continue;
    }
    if (v.kind != Json::kObject) return bad(name, "the entry is not an object");
    const Json *dt = nullptr, *shape = nullptr, *offsets = nullptr;
    for (const auto& [k, mv] : v.members) {
      if (k == "dtype") dt = &mv;
      else if (k == "shape") shape = &mv;
      else if (k == "data_offsets") offsets = &mv;
      else return bad(name, absl::StrCat("unknown field \"", k, "\""));
    }
    if (!dt || !shape || !offsets) return bad(name, "needs dtype, shape and data_offsets");
    if (dt->kind != Json::kString) return bad(name, "dtype is not a string");
    Entry e{name, DType::kF32, {}, 0, 0};
    const char* const* hit = std::find(std::begin(kNames), std::end(kNames), dt->str);
    if (hit == std::end(kNames))
      return bad(name, absl::StrCat("dtype \"", dt->str, "\" is not supported (F32, BF16, I32, I64, U16)"));
    e.dtype = static_cast<DType>(hit - std::begin(kNames));
    if (shape->kind != Json::kArray || shape->items.size() > static_cast<size_t>(kMaxRank))
      return bad(name, absl::StrCat("shape must be an array of at most ", kMaxRank, " integers"));
    std::vector<int64_t> dims;
    uint64_t numel = 1;
    for (const Json& d : shape->items) {
      if (d.kind != Json::kInt || d.num < 0) return bad(name, "shape entries must be non-negative integers");
      dims.push_back(d.num);
      if (d.num > 0 && numel > (uint64_t{1} << 60) / static_cast<uint64_t>(d.num)) return bad(name, "shape too large");
      numel *= static_cast<uint64_t>(d.num);
    }
    e.shape = Shape(std::span<const int64_t>(dims));
    if (offsets->kind != Json::kArray || offsets->items.size() != 2 || offsets->items[0].kind != Json::kInt ||
        offsets->items[1].kind != Json::kInt || offsets->items[0].num < 0 || offsets->items[1].num < offsets->items[0].num)
      return bad(name, "data_offsets must be [begin, end] with 0 <= begin <= end");
    e.begin = static_cast<uint64_t>(offsets->items[0].num);
    e.end = static_cast<uint64_t>(offsets->items[1].num);
    const uint64_t want = numel * dtype_size(e.dtype);
    if (e.end - e.begin != want)
      return bad(name, absl::StrCat("data_offsets [", e.begin, ", ", e.end, ") hold ", e.end - e.begin, " bytes but ",
                                    dt->str, shape->items.size() ? "" : " scalar", " of ", numel, " elements needs ", want));
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
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      absl::StrAppend(&header, first ? "" : ",", json_quote(k), ":", json_quote(v));
      first = false;
    }
    header += "}";
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const NamedTensor& nt : tensors) {
    CMOE_CHECK(!nt.name.empty() && nt.name != "__metadata__", "safetensors: bad tensor name \"", nt.name, "\"");
    CMOE_CHECK(names.insert(nt.name).second, "safetensors: tensor \"", nt.name, "\" given twice");
    std::string shape;
    for (int64_t d : nt.tensor.shape().dims()) absl::StrAppend(&shape, shape.empty() ? "" : ",", d);
    absl::StrAppend(&header, header.size() > 1 ? "," : "", json_quote(nt.name), ":{\"dtype\":\"",
                    kNames[static_cast<int>(nt.tensor.dtype())], "\",\"shape\":[", shape, "],\"data_offsets\":[", offset,
                    ",", offset + nt.tensor.nbytes(), "]}");
    offset += nt.tensor.nbytes();
  }
  header += "}";
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
