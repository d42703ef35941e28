// line_reader.cpp — see line_reader.h.
#include "data/line_reader.h"

#include <zstd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace cmoe::data {

absl::StatusOr<std::unique_ptr<LineReader>> LineReader::open(const std::string& path) {
  std::unique_ptr<LineReader> r(new LineReader());
  r->path_ = path;
  r->f_ = std::fopen(path.c_str(), "rb");
  if (r->f_ == nullptr) return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  if (path.size() >= 4 && path.compare(path.size() - 4, 4, ".zst") == 0) {
    r->zstd_ = ZSTD_createDStream();
    if (r->zstd_ == nullptr) return absl::InternalError("ZSTD_createDStream failed");
    ZSTD_initDStream(static_cast<ZSTD_DStream*>(r->zstd_));
    r->in_.resize(ZSTD_DStreamInSize());
  } else {
    r->in_.resize(1 << 20);
  }
  return r;
}

LineReader::~LineReader() {
  if (zstd_ != nullptr) ZSTD_freeDStream(static_cast<ZSTD_DStream*>(zstd_));
  if (f_ != nullptr) std::fclose(f_);
}

absl::Status LineReader::fill() {
  // A full output buffer may hold back decoded bytes: flush those before reading more input.
  if (in_pos_ == in_size_ && !(zstd_ != nullptr && out_full_)) {
    in_size_ = std::fread(in_.data(), 1, in_.size(), f_);
    in_pos_ = 0;
    raw_bytes_ += static_cast<int64_t>(in_size_);
    if (in_size_ == 0) {
      if (std::ferror(f_)) return absl::DataLossError(absl::StrCat(path_, ": read error: ", std::strerror(errno)));
      if (zstd_ != nullptr && frame_open_) {
        return absl::DataLossError(absl::StrCat(path_, ": at byte ", raw_bytes_,
                                                ": the zstd stream ends inside a frame (truncated file)"));
      }
      eof_ = true;
      return absl::OkStatus();
    }
  }
  if (zstd_ == nullptr) {
    buf_.append(in_.data() + in_pos_, in_size_ - in_pos_);
    in_pos_ = in_size_;
    return absl::OkStatus();
  }
  std::vector<char> out(ZSTD_DStreamOutSize());
  ZSTD_inBuffer in{in_.data(), in_size_, in_pos_};
  ZSTD_outBuffer o{out.data(), out.size(), 0};
  const size_t ret = ZSTD_decompressStream(static_cast<ZSTD_DStream*>(zstd_), &o, &in);
  if (ZSTD_isError(ret)) {
    return absl::DataLossError(absl::StrCat(path_, ": near byte ", raw_bytes_ - static_cast<int64_t>(in_size_ - in.pos),
                                            ": corrupt zstd data: ", ZSTD_getErrorName(ret)));
  }
  frame_open_ = ret != 0;  // 0: a frame just ended (another may follow)
  in_pos_ = in.pos;
  out_full_ = o.pos == o.size;
  buf_.append(out.data(), o.pos);
  return absl::OkStatus();
}

absl::StatusOr<bool> LineReader::next(std::string* line) {
  for (;;) {
    const size_t nl = buf_.find('\n', buf_pos_);
    if (nl != std::string::npos) {
      line->assign(buf_, buf_pos_, nl - buf_pos_);
      buf_pos_ = nl + 1;
      ++line_no_;
      return true;
    }
    if (eof_) {
      if (buf_pos_ < buf_.size()) {
        line->assign(buf_, buf_pos_, std::string::npos);
        buf_pos_ = buf_.size();
        ++line_no_;
        return true;
      }
      return false;
    }
    if (buf_pos_ > 0) {  // drop returned bytes before reading more
      buf_.erase(0, buf_pos_);
      buf_pos_ = 0;
    }
    if (absl::Status s = fill(); !s.ok()) return s;
  }
}

}  // namespace cmoe::data
