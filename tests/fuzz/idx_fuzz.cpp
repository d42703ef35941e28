// idx_fuzz.cpp — fuzz entry point for the Megatron .idx reader (data/indexed_dataset.h).
//
// An input is 8 bytes (little-endian: the size of the .bin, taken modulo 1 MiB) followed by the
// .idx bytes. index_parse must either refuse it with a message naming the .idx or the .bin, or
// accept a layout that keeps every promise the reader relies on: each sequence inside the .bin,
// at a multiple of the token size, right after the previous one, the last ending at the .bin's
// end, and a document index from 0 to S, non-decreasing. The accepted sequences are then read
// from a .bin of that size, so a layout that leads outside it is caught by ASan as well.
// cmoe_fuzz_mutate edits the header fields and arrays in place (interesting values at field
// offsets), which random byte edits rarely reach.
#include <algorithm>
#include <array>
#include <iterator>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "data/indexed_dataset.h"

namespace {

using cmoe::data::IndexLayout;

constexpr uint64_t kMaxBin = 1u << 20;

[[noreturn]] void broken(const char* what, int64_t i) {
  std::fprintf(stderr, "idx_fuzz: an accepted index breaks its promise: %s (entry %lld)\n", what, static_cast<long long>(i));
  std::abort();
}

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  const uint64_t bin_size = load<uint64_t>(data) % kMaxBin;
  const uint8_t* idx = data + 8;
  const size_t idx_size = size - 8;
  auto L = cmoe::data::index_parse(idx, idx_size, bin_size, "fuzz.idx", "fuzz.bin");
  if (!L.ok()) {
    const std::string msg(L.status().message());
    if (msg.find("fuzz.idx") == std::string::npos && msg.find("fuzz.bin") == std::string::npos) {
      std::fprintf(stderr, "idx_fuzz: error without the file name: %s\n", msg.c_str());
      std::abort();
    }
    return 0;
  }
  // The .bin, exactly bin_size bytes on the heap (ASan sees a read past its end).
  std::vector<uint8_t> bin(bin_size);
  for (size_t i = 0; i < bin.size(); ++i) bin[i] = static_cast<uint8_t>(i * 131 + 7);
  const uint64_t itemsize = cmoe::data::token_dtype_size(L->dtype);
  uint64_t next = 0, sum = 0;
  for (int64_t i = 0; i < L->num_sequences; ++i) {
    const int32_t len = load<int32_t>(idx + L->lengths_offset + 4 * i);
    const int64_t ptr = load<int64_t>(idx + L->pointers_offset + 8 * i);
    if (len < 0) broken("negative length", i);
    if (ptr < 0 || static_cast<uint64_t>(ptr) != next) broken("pointer not where the previous sequence ends", i);
    if (static_cast<uint64_t>(ptr) % itemsize != 0) broken("misaligned pointer", i);
    next += static_cast<uint64_t>(len) * itemsize;
    if (next > bin_size) broken("sequence past the .bin", i);
    for (uint64_t b = static_cast<uint64_t>(ptr); b < next; ++b) sum += bin[b];
  }
  if (next != bin_size) broken("sequences do not end at the .bin's end", L->num_sequences);
  int64_t prev = 0;
  for (int64_t j = 0; j < L->doc_index_length; ++j) {
    const int64_t d = load<int64_t>(idx + L->doc_index_offset + 8 * j);
    if ((j == 0 && d != 0) || d < prev || d > L->num_sequences) broken("document index out of order", j);
    prev = d;
  }
  if (prev != L->num_sequences) broken("document index does not end at S", L->doc_index_length - 1);
  volatile uint64_t sink = sum;
  (void)sink;
  return 0;
}

namespace {

// Offsets (in the fuzz input: the .idx starts at byte 8) of the header fields and the first
// array entries.
constexpr size_t kFieldOffsets[] = {0, 8 + 9, 8 + 17, 8 + 18, 8 + 26, 8 + 34, 8 + 38, 8 + 42, 8 + 50, 8 + 58, 8 + 66};
constexpr uint64_t kInteresting[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x7f, 0x80, 0xff, 0x7fffffff, 0x80000000,
                                     0xffffffff, 0x7fffffffffffffffULL, 0x8000000000000000ULL, ~0ULL, 4096, 4097};

}  // namespace

extern "C" size_t cmoe_fuzz_mutate(uint8_t* data, size_t size, size_t max_size, uint64_t seed) {
  uint64_t r = seed;
  auto next = [&r] { return r = r * 6364136223846793005ULL + 1442695040888963407ULL, r >> 17; };
  switch (next() % 4) {
    case 0: {  // an interesting 1-, 4- or 8-byte value at a field or an array slot
      const size_t at = next() % 2 ? kFieldOffsets[next() % std::size(kFieldOffsets)] : next() % (size + 1);
      const int width = std::array<int, 3>{1, 4, 8}[next() % 3];
      const uint64_t v = kInteresting[next() % std::size(kInteresting)];
      for (int i = 0; i < width && at + i < size; ++i) data[at + i] = static_cast<uint8_t>(v >> (8 * i));
      break;
    }
    case 1:  // the .bin size nudged by a few bytes
      if (size >= 8) {
        uint64_t bin = load<uint64_t>(data) + next() % 9 - 4;
        std::memcpy(data, &bin, 8);
      }
      break;
    case 2:  // the old format's magic
      if (size >= 16) std::memcpy(data + 8, "TNTIDX\0\0", 8);
      break;
    default:  // a pointer moved by one item or one byte
      if (size >= 8 + 34 + 8) {
        const uint64_t s = load<uint64_t>(data + 8 + 18);
        if (s > 0 && s < (size - 8) / 12) {
          const size_t at = 8 + 34 + 4 * s + 8 * (next() % s);
          uint64_t p = load<uint64_t>(data + at) + next() % 5 - 2;  // wraps, as a corrupt pointer may
          std::memcpy(data + at, &p, 8);
        }
      }
      break;
  }
  (void)max_size;
  return size;
}
