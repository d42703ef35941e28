// manifest_fuzz.cpp — fuzz entry point for the checkpoint manifest reader (checkpoint/checkpoint.h).
//
// Each input is tried twice:
//  1. as manifest.pb itself: checkpoint_parse_manifest must refuse it with a message naming the
//     file, or accept it; a random change to a checksummed manifest must never be accepted
//     (the input's trailer no longer matches), so this mostly exercises the parser's refusals;
//  2. re-sealed — its bytes (less a manifest_crc32c trailer it ends in) followed by a correct
//     trailer — so that the checks after the checksum see the mutated fields: the version, the
//     counters, then CheckpointReader::open on a directory holding it and sparse shard files
//     as long as its entries ask (one byte short for half the inputs), the entries' checks, reads
//     of the small tensors (every CRC is checked; zeros will not match), the saved config parsed
//     as `cmoe checkpoint inspect` does, and manifest.txt written and checked as verify does.
// Nothing may crash, hang, allocate without bound or abort; refusals name the file.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <string_view>

#include "checkpoint/checkpoint.h"
#include "checkpoint/crc32c.h"
#include "moe/train/config.h"

namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMaxFile = 16u << 20;   // sparse shard files up to this size
constexpr uint64_t kMaxRead = 1u << 20;    // tensors read back up to this size

// A scratch directory for the re-sealed manifest and its shard files, removed at exit.
struct Scratch {
  fs::path dir = fs::temp_directory_path() / ("cmoe-manifest-fuzz-" + std::to_string(::getpid()));
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

void require_named(const absl::Status& st, const std::string& name, const char* what) {
  if (std::string(st.message()).find(name) == std::string::npos) {
    std::fprintf(stderr, "manifest_fuzz: %s refused without naming %s: %s\n", what, name.c_str(), std::string(st.message()).c_str());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Scratch scratch;
  const std::string_view raw(reinterpret_cast<const char*>(data), size);
  auto as_is = cmoe::checkpoint_parse_manifest(raw, "fuzz/manifest.pb");
  if (!as_is.ok()) require_named(as_is.status(), "fuzz/manifest.pb", "manifest.pb");

  // Re-sealed: the same bytes with a correct checksum at the end.
  std::string body(raw);
  if (body.size() >= 5 && body[body.size() - 5] == '\x7d') body.resize(body.size() - 5);
  const uint32_t crc = cmoe::crc32c(body.data(), body.size());
  std::string sealed = body;
  sealed.push_back('\x7d');
  for (int i = 0; i < 4; ++i) sealed.push_back(static_cast<char>((crc >> (8 * i)) & 0xff));
  auto m = cmoe::checkpoint_parse_manifest(sealed, "fuzz/manifest.pb");
  if (!m.ok()) {
    require_named(m.status(), "fuzz/manifest.pb", "re-sealed manifest.pb");
    return 0;
  }
  std::error_code ec;
  fs::remove_all(scratch.dir, ec);
  fs::create_directories(scratch.dir);
  const std::string dir = scratch.dir.string();
  std::ofstream(dir + "/manifest.pb", std::ios::binary) << sealed;
  // Shard files as long as the entries ask (sparse), one byte short for half the inputs.
  std::map<std::string, uint64_t> ends;
  for (const auto& e : m->tensors()) {
    const std::string& f = e.file();
    if (f.empty() || f.find('/') != std::string::npos || f.find("..") != std::string::npos || f.size() > 64 ||
        f == "manifest.pb" || f == "manifest.txt") {
      continue;
    }
    uint64_t& end = ends[f];
    if (e.offset() <= kMaxFile && e.nbytes() <= kMaxFile - e.offset()) end = std::max(end, e.offset() + e.nbytes());
  }
  const bool short_by_one = crc & 1;
  for (const auto& [f, end] : ends) {
    std::ofstream(dir + "/" + f, std::ios::binary);
    fs::resize_file(dir + "/" + f, short_by_one && end > 0 ? end - 1 : end, ec);
  }
  auto reader = cmoe::CheckpointReader::open(dir);
  if (!reader.ok()) {
    require_named(reader.status(), dir, "CheckpointReader::open");
  } else {
    for (const std::string& name : (*reader)->names()) {
      const auto* info = (*reader)->find(name);
      if (info->shape.numel() * static_cast<int64_t>(cmoe::dtype_size(info->dtype)) <= static_cast<int64_t>(kMaxRead)) {
        (void)(*reader)->read(name);
      }
    }
  }
  (void)cmoe::config_parse(m->config(), "fuzz/manifest.pb (config)");
  std::ofstream(dir + "/manifest.txt", std::ios::binary) << cmoe::checkpoint_manifest_text(*m);
  absl::Status text = cmoe::checkpoint_check_manifest_text(dir, *m);
  if (!text.ok()) {
    std::fprintf(stderr, "manifest_fuzz: the manifest.txt written for a manifest disagrees with it: %s\n",
                 std::string(text.message()).c_str());
    std::abort();
  }
  return 0;
}

extern "C" const char* const* cmoe_fuzz_dictionary(size_t* count) {
  // Field tags and values of Manifest, TensorEntry, Counter and Layout (proto2: repeated
  // scalars unpacked). C strings, so no token holds a 0 byte.
  static const char* const kWords[] = {
      "\x08\x03", "\x08\x02", "\x08\x01", "\x08\x04", "\x18\x05", "\x20\x7f", "\x28\x01", "\x7d",
      "\x32\x19\x0a\x15" "data.consumed_samples" "\x10\x28", "\x32\x13\x0a\x0f" "optimizer.steps" "\x10\x0a",
      "\x42\x06\x08\x01\x10\x02\x18\x02", "\x3a", "\x0a\x01" "w", "\x12\x03" "f32", "\x12\x04" "bf16", "\x18\x06",
      "\x20\x02", "\x28\x06", "\x32\x09" "shard.bin", "\x38\x40", "\x40\x30", "\x48\x01",
      "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
      "\x12\x19" "model { vocab_size: 512 }",
  };
  *count = sizeof(kWords) / sizeof(kWords[0]);
  return kWords;
}
