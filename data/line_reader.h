// line_reader.h — reads text files line by line: plain (.txt, .jsonl) or zstd-compressed
// (.zst, as the Pile ships: a stream of concatenated frames without content sizes).
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace cmoe::data {

class LineReader {
 public:
  // Compression is chosen by the name: a ".zst" suffix means zstd.
  static absl::StatusOr<std::unique_ptr<LineReader>> open(const std::string& path);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // Sets *line to the next line without its '\n' (a final line without '\n' counts); returns
  // false at the end of the input, or an error (I/O, corrupt or truncated zstd stream).
  absl::StatusOr<bool> next(std::string* line);
  int64_t line_number() const { return line_no_; }  // of the last line returned, 1-based
  int64_t bytes_read() const { return raw_bytes_; }  // compressed bytes consumed so far

 private:
  LineReader() = default;
  absl::Status fill();  // appends decoded bytes to buf_; sets eof_ at the end

  std::string path_;
  std::FILE* f_ = nullptr;
  void* zstd_ = nullptr;  // ZSTD_DStream* when compressed
  std::vector<char> in_;  // compressed input buffer
  size_t in_pos_ = 0, in_size_ = 0;
  bool frame_open_ = false;  // inside a zstd frame that has not ended
  bool out_full_ = false;    // the last decode filled its output buffer
  std::string buf_;          // decoded bytes not yet returned
  size_t buf_pos_ = 0;
  bool eof_ = false;
  int64_t line_no_ = 0;
  int64_t raw_bytes_ = 0;
};

}  // namespace cmoe::data
