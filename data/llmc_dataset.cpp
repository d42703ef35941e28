// llmc_dataset.cpp — see llmc_dataset.h for the shard layout and how shards become sequences.
#include "data/llmc_dataset.h"

#include <glob.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/check.h"

namespace cmoe::data {

namespace {

// The directory glob() could not read, and why (set by glob_error; glob runs on this thread).
thread_local std::string g_glob_failed_dir;
thread_local int g_glob_errno = 0;
int glob_error(const char* path, int err) {
  g_glob_failed_dir = path;
  g_glob_errno = err;
  return 1;  // stop: a directory that cannot be read could hide shards
}

// The files `pattern` matches, in byte order; a pattern without glob characters is itself.
absl::StatusOr<std::vector<std::string>> expand_pattern(const std::string& pattern) {
  if (pattern.find_first_of("*?[") == std::string::npos) return std::vector<std::string>{pattern};
  glob_t g{};
  g_glob_failed_dir.clear();
  const int rc = ::glob(pattern.c_str(), GLOB_ERR | GLOB_NOSORT, glob_error, &g);
  std::vector<std::string> out;
  if (rc == 0) out.assign(g.gl_pathv, g.gl_pathv + g.gl_pathc);
  ::globfree(&g);
  if (rc == GLOB_NOMATCH) {
    return absl::NotFoundError(absl::StrCat(pattern, ": no file matches this llm.c shard pattern"));
  }
  if (rc == GLOB_ABORTED && !g_glob_failed_dir.empty()) {
    return absl::NotFoundError(absl::StrCat(pattern, ": cannot read directory ", g_glob_failed_dir, ": ",
                                            std::strerror(g_glob_errno)));
  }
  if (rc != 0) return absl::InternalError(absl::StrCat(pattern, ": cannot expand the pattern (glob error ", rc, ")"));
  std::sort(out.begin(), out.end());  // bytewise, whatever the locale
  return out;
}

const char* kind_name(LlmcShard::Kind k) { return k == LlmcShard::Kind::kGpt2 ? "GPT-2" : "Llama-3"; }

}  // namespace

absl::StatusOr<LlmcDataset> LlmcDataset::open(const std::string& path) {
  CMOE_ASSIGN_OR_RETURN(std::vector<std::string> files, expand_pattern(path));
  LlmcDataset ds;
  ds.name_ = path;
  ds.shard_base_.push_back(0);
  constexpr int64_t kChunk = int64_t{1} << 20;  // tokens scanned per read
  std::vector<int32_t> buf;
  for (const std::string& f : files) {
    CMOE_ASSIGN_OR_RETURN(LlmcShard shard, LlmcShard::open(f));
    if (!ds.shards_.empty() && shard.kind() != ds.shards_.front().kind()) {
      return absl::InvalidArgumentError(absl::StrCat(f, ": a ", kind_name(shard.kind()), " shard, but ",
                                                     ds.shards_.front().path(), " is a ", kind_name(ds.kind()),
                                                     " shard; one source must hold one kind (one vocabulary)"));
    }
    const int64_t base = ds.shard_base_.back(), n = shard.num_tokens();
    const int32_t delim = shard.document_delimiter();
    // A document starts before every delimiter, and at the shard's first token (the previous
    // shard's closing boundary below, or 0).
    for (int64_t at = 0; at < n; at += kChunk) {
      const int64_t count = std::min(kChunk, n - at);
      buf.resize(static_cast<size_t>(count));
      CMOE_RETURN_IF_ERROR(shard.read(at, count, buf.data()));
      for (int64_t k = 0; k < count; ++k) {
        const int64_t pos = base + at + k;
        if (buf[k] == delim && pos > ds.seq_start_.back()) ds.seq_start_.push_back(pos);
      }
    }
    // Close the shard's last document, so none spans two shards (a no-op for an empty shard).
    if (base + n > ds.seq_start_.back()) ds.seq_start_.push_back(base + n);
    ds.shard_base_.push_back(base + n);
    ds.shards_.push_back(std::move(shard));
  }
  CMOE_CHECK(!ds.shards_.empty(), "expand_pattern returned no file for ", path);
  // seq_start_ holds the start of every sequence and, last, the end of the stream.
  CMOE_CHECK(ds.seq_start_.back() == ds.shard_base_.back(), "llm.c index does not cover the stream");
  return ds;
}

std::pair<size_t, int64_t> LlmcDataset::shard_of(int64_t pos) const {
  // The last shard starting at or before pos (skips empty shards, which start where the next does).
  const auto it = std::upper_bound(shard_base_.begin(), shard_base_.end() - 1, pos);
  const size_t k = static_cast<size_t>(it - shard_base_.begin()) - 1;
  return {k, pos - shard_base_[k]};
}

int32_t LlmcDataset::sequence_length(int64_t i) const {
  CMOE_CHECK(i >= 0 && i < num_sequences(), "sequence ", i, " of ", num_sequences());
  return static_cast<int32_t>(seq_start_[i + 1] - seq_start_[i]);
}

absl::Status LlmcDataset::read(int64_t i, int64_t offset, int64_t count, int32_t* out) const {
  if (i < 0 || i >= num_sequences()) {
    return absl::OutOfRangeError(
        absl::StrCat(name_, ": sequence ", i, " requested, the shards hold ", num_sequences()));
  }
  const int64_t len = sequence_length(i);
  if (offset < 0 || count < 0 || offset > len || count > len - offset) {
    return absl::OutOfRangeError(absl::StrCat(name_, ": tokens [", offset, ", ", offset, " + ", count,
                                              ") requested from sequence ", i, " of length ", len));
  }
  // A sequence never spans two shards.
  const auto [k, local] = shard_of(seq_start_[i]);
  return shards_[k].read(local + offset, count, out);
}

std::string LlmcDataset::token_location(int64_t i, int64_t offset) const {
  CMOE_CHECK(i >= 0 && i < num_sequences(), "sequence ", i, " of ", num_sequences());
  const auto [k, local] = shard_of(seq_start_[i]);
  const int64_t itemsize = shards_[k].kind() == LlmcShard::Kind::kGpt2 ? 2 : 4;
  return absl::StrCat(shards_[k].path(), ": at byte ",
                      static_cast<int64_t>(LlmcShard::kHeaderBytes) + (local + offset) * itemsize);
}

}  // namespace cmoe::data
