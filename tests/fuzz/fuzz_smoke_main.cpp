// fuzz_smoke_main.cpp — runs a libFuzzer entry point (LLVMFuzzerTestOneInput) without libFuzzer:
// over every seed file, then over deterministic mutants of them (bit flips, byte edits, cuts,
// duplicated and deleted ranges, JSON-ish tokens spliced in), so CI with any compiler exercises
// the fuzz target in seconds. A crash or CMOE_CHECK failure aborts; mutant k of seed s is
// reproducible from the seed; the failing input is also written to ./fuzz-crash-input.
//
//   usage: NAME_smoke [--iterations N] [--seed S] FILE_OR_DIR...
#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

// The input being run, written to ./fuzz-crash-input when the entry point aborts.
const std::string* g_current = nullptr;

extern "C" void on_abort(int sig) {
  if (g_current) {
    if (FILE* f = std::fopen("fuzz-crash-input", "wb")) {
      std::fwrite(g_current->data(), 1, g_current->size(), f);
      std::fclose(f);
      std::fputs("fuzz smoke: failing input written to ./fuzz-crash-input\n", stderr);
    }
  }
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void run(const std::string& s) {
  g_current = &s;
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  g_current = nullptr;
}

std::string mutate(std::string s, std::mt19937_64& rng) {
  static const char* kTokens[] = {"{", "}", "[", "]", "\"", ",", ":", "null", "true", "0", "-1", "1e999",
                                  "\\u", "\\ud800", "\"type\"", "\"BPE\"", "\"NFC\"", "\xFF", "\xC3", " ",
                                  "\"merges\"", "\"vocab\"", "\"added_tokens\"", "2147483648", "\"\""};
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits; ++e) {
    const size_t n = s.size();
    const size_t at = n ? rng() % n : 0;
    switch (rng() % 7) {
      case 0:
        if (n) s[at] = static_cast<char>(s[at] ^ (1u << (rng() % 8)));
        break;
      case 1:
        if (n) s[at] = static_cast<char>(rng() & 0xFF);
        break;
      case 2:
        s.resize(at);
        break;
      case 3:
        if (n) s.erase(at, 1 + rng() % std::min<size_t>(64, n - at));
        break;
      case 4:
        if (n) {
          size_t len = 1 + rng() % std::min<size_t>(64, n - at);
          s.insert(rng() % (n + 1), s.substr(at, len));
        }
        break;
      case 5:
        s.insert(n ? rng() % (n + 1) : 0, kTokens[rng() % (sizeof(kTokens) / sizeof(kTokens[0]))]);
        break;
      default:
        s.insert(n ? rng() % (n + 1) : 0, 1, static_cast<char>(rng() & 0xFF));
        break;
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  long iterations = 500;
  unsigned long long seed = 1;
  std::vector<std::filesystem::path> inputs;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--iterations") && i + 1 < argc) {
      iterations = std::strtol(argv[++i], nullptr, 10);
    } else if (!std::strcmp(argv[i], "--seed") && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (std::filesystem::is_directory(argv[i])) {
      for (const auto& e : std::filesystem::directory_iterator(argv[i])) inputs.push_back(e.path());
    } else {
      inputs.emplace_back(argv[i]);
    }
  }
  std::sort(inputs.begin(), inputs.end());
  if (inputs.empty()) {
    std::fprintf(stderr, "usage: %s [--iterations N] [--seed S] FILE_OR_DIR...\n", argv[0]);
    return 2;
  }
  std::signal(SIGABRT, on_abort);
  std::signal(SIGSEGV, on_abort);
  long runs = 0;
  for (size_t f = 0; f < inputs.size(); ++f) {
    const std::string base = read_all(inputs[f]);
    if (base.empty()) {
      std::fprintf(stderr, "cannot read seed %s\n", inputs[f].c_str());
      return 2;
    }
    run(base);
    std::mt19937_64 rng(seed * 1000003 + f);
    for (long k = 0; k < iterations; ++k, ++runs) run(mutate(base, rng));
  }
  std::printf("fuzz smoke: %zu seeds, %ld mutants, seed %llu: no crash\n", inputs.size(), runs, seed);
  return 0;
}
