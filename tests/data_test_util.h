// data_test_util.h — helpers shared by the data tests: a scratch directory and small
// deterministic datasets written with IndexedDatasetWriter.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "data/indexed_dataset.h"
#include "gtest/gtest.h"

namespace cmoe::data::testing {

// A fresh directory under the system temp dir, removed with its contents on destruction.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag) {
    path_ = std::filesystem::temp_directory_path() /
            (std::string("cmoe-") + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

// Writes one single-sequence document per entry of `docs` as PREFIX.{bin,idx}.
inline void write_documents(const std::string& prefix, const std::vector<std::vector<int32_t>>& docs,
                            TokenDType dtype = TokenDType::kU16) {
  auto w = IndexedDatasetWriter::create(prefix, dtype);
  ASSERT_TRUE(w.ok()) << w.status();
  for (const auto& d : docs) ASSERT_TRUE(w->add_document(d).ok());
  ASSERT_TRUE(w->finish().ok());
}

// `n` documents with lengths in [0, max_len] (some empty) and token ids base + (running count
// mod 997), from a fixed LCG so every run sees the same data.
inline std::vector<std::vector<int32_t>> lcg_documents(int n, int max_len, int32_t base, uint64_t seed) {
  std::vector<std::vector<int32_t>> docs(n);
  uint64_t s = seed;
  int32_t tok = 0;
  for (auto& d : docs) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    const int len = static_cast<int>((s >> 33) % static_cast<uint64_t>(max_len + 1));
    for (int i = 0; i < len; ++i) d.push_back(base + (tok++ % 997));
  }
  return docs;
}

}  // namespace cmoe::data::testing
