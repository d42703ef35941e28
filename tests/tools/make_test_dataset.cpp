// make_test_dataset.cpp — writes a small deterministic Megatron dataset for end-to-end tests:
// documents of a learnable token pattern (a random walk of +1/+2 steps mod V) so training
// visibly lowers the loss. Usage: make_test_dataset PREFIX VOCAB DOCS SEED
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/rng.h"
#include "data/indexed_dataset.h"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: make_test_dataset PREFIX VOCAB DOCS SEED\n");
    return 2;
  }
  const std::string prefix = argv[1];
  const int64_t vocab = std::atoll(argv[2]), docs = std::atoll(argv[3]);
  const uint64_t seed = std::strtoull(argv[4], nullptr, 10);
  auto w = cmoe::data::IndexedDatasetWriter::create(prefix, cmoe::data::token_dtype_for_vocab(vocab));
  if (!w.ok()) {
    std::fprintf(stderr, "%s\n", std::string(w.status().message()).c_str());
    return 1;
  }
  uint64_t draw = 0;
  for (int64_t d = 0; d < docs; ++d) {
    const int64_t len = 50 + cmoe::rng_u32(seed, 1, draw++) % 200;
    std::vector<int32_t> toks(len);
    int32_t t = static_cast<int32_t>(cmoe::rng_u32(seed, 2, draw++) % (vocab - 1));
    for (int64_t i = 0; i < len; ++i) {
      toks[i] = t;
      t = static_cast<int32_t>((t + 1 + cmoe::rng_u32(seed, 3, draw++) % 2) % (vocab - 1));
    }
    toks.back() = static_cast<int32_t>(vocab - 1);  // end of document
    if (auto st = w->add_document(toks); !st.ok()) {
      std::fprintf(stderr, "%s\n", std::string(st.message()).c_str());
      return 1;
    }
  }
  if (auto st = w->finish(); !st.ok()) {
    std::fprintf(stderr, "%s\n", std::string(st.message()).c_str());
    return 1;
  }
  return 0;
}
