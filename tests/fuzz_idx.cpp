// fuzz_idx.cpp — fuzz target for the Megatron .idx reader.
//
// LLVMFuzzerTestOneInput feeds arbitrary bytes to index_parse (against a fixed 4 KiB .bin) and,
// when they validate, walks every sequence and document the way IndexedDataset does, touching
// the .bin bytes each pointer names: a validated index must never lead outside its files.
//
// Built two ways:
//  - with clang and -fsanitize=fuzzer (cmake -DCMOE_FUZZ=ON, target fuzz_idx): libFuzzer drives
//    it, for longer runs on demand;
//  - everywhere else with CMOE_FUZZ_STANDALONE (target fuzz_idx_driver, run by CTest): a
//    deterministic mutation driver runs every truncation of the seed files plus thousands of
//    seeded mutations (bit flips, interesting values in header fields, cuts, extensions,
//    splices), and every 64th input also through IndexedDataset::open on real files.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "data/indexed_dataset.h"

namespace {

using cmoe::data::IndexLayout;
using cmoe::data::TokenDType;

constexpr size_t kBinSize = 4096;

const std::vector<uint8_t>& fuzz_bin() {
  static const std::vector<uint8_t> bin = [] {
    std::vector<uint8_t> b(kBinSize);
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 131 + 7);
    return b;
  }();
  return bin;
}

// Walks a validated layout; returns a checksum so the reads cannot be optimised away.
uint64_t walk(const uint8_t* idx, const IndexLayout& L) {
  const auto& bin = fuzz_bin();
  const uint64_t itemsize = cmoe::data::token_dtype_size(L.dtype);
  uint64_t sum = 0;
  for (int64_t i = 0; i < L.num_sequences; ++i) {
    int32_t len;
    int64_t ptr;
    std::memcpy(&len, idx + L.lengths_offset + 4 * i, 4);
    std::memcpy(&ptr, idx + L.pointers_offset + 8 * i, 8);
    if (len < 0 || ptr < 0 || static_cast<uint64_t>(ptr) + len * itemsize > bin.size()) {
      std::fprintf(stderr, "fuzz_idx: validated index leads outside the .bin (sequence %lld)\n",
                   static_cast<long long>(i));
      std::abort();
    }
    for (uint64_t b = 0; b < len * itemsize; ++b) sum += bin[static_cast<size_t>(ptr) + b];
  }
  int64_t prev = 0;
  for (int64_t j = 0; j < L.doc_index_length; ++j) {
    int64_t d;
    std::memcpy(&d, idx + L.doc_index_offset + 8 * j, 8);
    if (d < prev || d > L.num_sequences) {
      std::fprintf(stderr, "fuzz_idx: validated document index is not monotone\n");
      std::abort();
    }
    prev = d;
  }
  return sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto L = cmoe::data::index_parse(data, size, kBinSize, "fuzz.idx", "fuzz.bin");
  if (L.ok()) {
    volatile uint64_t sink = walk(data, *L);
    (void)sink;
  } else if (L.status().message().find("fuzz.idx") == std::string::npos) {
    std::fprintf(stderr, "fuzz_idx: error without the file name: %s\n", std::string(L.status().message()).c_str());
    std::abort();
  }
  return 0;
}

#ifdef CMOE_FUZZ_STANDALONE

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace {

void le(std::vector<uint8_t>* b, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) b->push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// A valid .idx with the given lengths (contiguous pointers) and document index.
std::vector<uint8_t> seed_idx(uint8_t dtype, int itemsize, const std::vector<uint32_t>& lens,
                              const std::vector<uint64_t>& docs) {
  std::vector<uint8_t> b = {'M', 'M', 'I', 'D', 'I', 'D', 'X', 0, 0};
  le(&b, 1, 8), le(&b, dtype, 1), le(&b, lens.size(), 8), le(&b, docs.size(), 8);
  for (uint32_t l : lens) le(&b, l, 4);
  uint64_t p = 0;
  for (uint32_t l : lens) le(&b, p, 8), p += static_cast<uint64_t>(l) * itemsize;
  for (uint64_t d : docs) le(&b, d, 8);
  return b;
}

struct Rng {
  uint64_t s;
  uint64_t next() {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return s >> 17;
  }
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(next() % n); }
};

void mutate(std::vector<uint8_t>* b, Rng* r, const std::vector<std::vector<uint8_t>>& seeds) {
  static const uint64_t kInteresting[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x7f, 0x80, 0xff, 0x7fffffff, 0x80000000,
                                          0xffffffff, 0x7fffffffffffffffULL, 0x8000000000000000ULL, ~0ULL, kBinSize,
                                          kBinSize + 1};
  const int n = 1 + static_cast<int>(r->below(4));
  for (int m = 0; m < n; ++m) {
    switch (r->below(7)) {
      case 0:  // flip a bit
        if (!b->empty()) (*b)[r->below(b->size())] ^= static_cast<uint8_t>(1u << r->below(8));
        break;
      case 1:  // interesting byte
        if (!b->empty()) (*b)[r->below(b->size())] = static_cast<uint8_t>(kInteresting[r->below(21)]);
        break;
      case 2: {  // interesting 4- or 8-byte value at a field-ish offset
        static const size_t kFields[] = {9, 17, 18, 26, 34, 38, 42, 50, 58};
        const size_t at = r->below(2) ? kFields[r->below(9)] : r->below(b->size() + 1);
        const int width = r->below(2) ? 8 : 4;
        const uint64_t v = kInteresting[r->below(21)];
        for (int i = 0; i < width && at + i < b->size(); ++i) (*b)[at + i] = static_cast<uint8_t>(v >> (8 * i));
        break;
      }
      case 3:  // cut
        b->resize(r->below(b->size() + 1));
        break;
      case 4:  // extend
        for (size_t k = r->below(24); k > 0; --k) b->push_back(static_cast<uint8_t>(r->next()));
        break;
      case 5: {  // splice from another seed
        const auto& o = seeds[r->below(seeds.size())];
        if (!o.empty() && !b->empty()) {
          const size_t from = r->below(o.size()), to = r->below(b->size());
          const size_t len = std::min({r->below(32) + 1, o.size() - from, b->size() - to});
          std::memcpy(b->data() + to, o.data() + from, len);
        }
        break;
      }
      default:  // the old format's magic
        if (b->size() >= 8) std::memcpy(b->data(), "TNTIDX\0\0", 8);
        break;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 20000;
  const std::vector<std::vector<uint8_t>> seeds = {
      seed_idx(8, 2, {3, 0, 1, 2}, {0, 1, 1, 3, 4}),
      seed_idx(4, 4, {10, 20, 5}, {0, 3}),
      seed_idx(1, 1, {}, {0}),
      seed_idx(5, 8, {100, 0, 400}, {0, 1, 2, 3}),
  };
  int64_t runs = 0, accepted = 0;
  for (const auto& s : seeds) {
    for (size_t cut = 0; cut <= s.size(); ++cut) {
      LLVMFuzzerTestOneInput(s.data(), cut);
      ++runs;
    }
  }
  const auto dir = std::filesystem::temp_directory_path() / ("cmoe-fuzz-idx-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream bin(dir / "f.bin", std::ios::binary);
    bin.write(reinterpret_cast<const char*>(fuzz_bin().data()), kBinSize);
  }
  Rng r{12345};
  for (int it = 0; it < iterations; ++it) {
    std::vector<uint8_t> b = seeds[r.below(seeds.size())];
    mutate(&b, &r, seeds);
    LLVMFuzzerTestOneInput(b.data(), b.size());
    accepted += cmoe::data::index_parse(b.data(), b.size(), kBinSize, "x", "y").ok();
    ++runs;
    if (it % 64 == 0) {
      {
        std::ofstream idx(dir / "f.idx", std::ios::binary | std::ios::trunc);
        idx.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
      }
      auto ds = cmoe::data::IndexedDataset::open((dir / "f").string());
      if (ds.ok()) {
        std::vector<int32_t> out;
        for (int64_t i = 0; i < ds->num_sequences(); ++i) {
          out.resize(static_cast<size_t>(ds->sequence_length(i)));
          (void)ds->read(i, 0, static_cast<int64_t>(out.size()), out.data());
        }
      }
    }
  }
  std::filesystem::remove_all(dir);
  std::printf("fuzz_idx: %lld inputs, %lld accepted as valid, no crash\n", static_cast<long long>(runs),
              static_cast<long long>(accepted));
  return 0;
}

#endif  // CMOE_FUZZ_STANDALONE
