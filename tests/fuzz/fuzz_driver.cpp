// fuzz_driver.cpp — runs a libFuzzer entry point (LLVMFuzzerTestOneInput) without libFuzzer, so
// every build (any compiler, Release or ASan+UBSan) can fuzz each parser that reads user files.
//
//   NAME_fuzz_driver [--seed S] [--runs N] [--seconds T] [--crash-dir DIR] CORPUS...
//
// CORPUS: files or directories (walked recursively). Every file is first run as it is — the
// regression inputs under corpus/NAME/regressions/ replay on every run — and then serves as a
// base for mutants: bit flips, byte edits, cuts, deleted/duplicated ranges, splices from other
// corpus files, the target's dictionary tokens (cmoe_fuzz_dictionary) and the target's own
// structure-aware edits (cmoe_fuzz_mutate), 1 to 4 edits per mutant. It stops after N mutants
// or T seconds, whichever comes first (default: 10000 mutants).
//
// The seed: --seed S, else $CMOE_FUZZ_SEED, else fresh from the clock and the process id, so
// each CI run searches new inputs. It is printed first; mutant k of a seed is the same on every
// machine, so `--seed S --runs K` replays a run up to its k-th input. When an input crashes,
// aborts (CMOE_CHECK, a sanitizer report) or runs over 20 s, it is written to
// DIR/crash-NAME-SEED-K (default DIR: the working directory) and the path printed; add it to
// tests/fuzz/corpus/NAME/regressions/ once the bug is fixed, so it replays in every run.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
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
// Optional, defined by a target: tokens worth splicing into its inputs, and a structure-aware
// edit of `data` in place (returns the new size, at most max_size).
extern "C" const char* const* cmoe_fuzz_dictionary(size_t* count) __attribute__((weak));
extern "C" size_t cmoe_fuzz_mutate(uint8_t* data, size_t size, size_t max_size, uint64_t seed) __attribute__((weak));
// Present in sanitizer builds: called before the process dies of a sanitizer report.
extern "C" void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

namespace {

namespace fs = std::filesystem;

constexpr unsigned kInputTimeoutS = 20;

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

// What the crash handlers need, set up before any input runs (handlers only read it).
struct CrashState {
  const std::string* input = nullptr;
  char path[4096] = {};
};
CrashState g_crash;

// Writes the current input to g_crash.path with async-signal-safe calls only.
void save_current_input() {
  static volatile sig_atomic_t saved = 0;
  if (saved || g_crash.input == nullptr) return;
  saved = 1;
  const int fd = ::open(g_crash.path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  const char* p = g_crash.input->data();
  size_t left = g_crash.input->size();
  while (left > 0) {
    const ssize_t w = ::write(fd, p, left);
    if (w <= 0) break;
    p += w, left -= static_cast<size_t>(w);
  }
  ::close(fd);
  static const char kMsg[] = "\nfuzz driver: the failing input is saved as ";
  (void)!::write(2, kMsg, sizeof(kMsg) - 1);
  (void)!::write(2, g_crash.path, std::strlen(g_crash.path));
  static const char kTail[] = "\nfuzz driver: once fixed, add it to tests/fuzz/corpus/<parser>/regressions/\n";
  (void)!::write(2, kTail, sizeof(kTail) - 1);
}

extern "C" void on_fatal_signal(int sig) {
  if (sig == SIGALRM) {
    static const char kMsg[] = "\nfuzz driver: one input ran longer than 20 s (a hang?)\n";
    (void)!::write(2, kMsg, sizeof(kMsg) - 1);
  }
  save_current_input();
  std::signal(sig == SIGALRM ? SIGABRT : sig, SIG_DFL);
  std::raise(sig == SIGALRM ? SIGABRT : sig);
}

extern "C" void on_sanitizer_death() { save_current_input(); }

class Mutator {
 public:
  Mutator(uint64_t seed, const std::vector<std::string>& corpus) : rng_(seed), corpus_(corpus) {
    if (cmoe_fuzz_dictionary != nullptr) {
      size_t n = 0;
      const char* const* words = cmoe_fuzz_dictionary(&n);
      for (size_t i = 0; i < n; ++i) dictionary_.emplace_back(words[i]);
    }
  }

  std::string mutant() {
    std::string s = corpus_[rng_() % corpus_.size()];
    const int edits = 1 + static_cast<int>(rng_() % 4);
    for (int e = 0; e < edits; ++e) edit(&s);
    return s;
  }

 private:
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(rng_() % n); }

  void edit(std::string* s) {
    const size_t n = s->size(), at = below(n);
    switch (rng_() % 10) {
      case 0:  // flip a bit
        if (n) (*s)[at] = static_cast<char>((*s)[at] ^ (1u << below(8)));
        break;
      case 1:  // any byte
        if (n) (*s)[at] = static_cast<char>(rng_() & 0xff);
        break;
      case 2:  // an interesting byte
        if (n) (*s)[at] = static_cast<char>("\x00\x01\x7f\x80\xff\x02\x10\x7d"[below(8)]);
        break;
      case 3:  // cut
        s->resize(below(n + 1));
        break;
      case 4:  // delete a range
        if (n) s->erase(at, 1 + below(std::min<size_t>(64, n - at)));
        break;
      case 5:  // duplicate a range
        if (n) s->insert(below(n + 1), s->substr(at, 1 + below(std::min<size_t>(64, n - at))));
        break;
      case 6: {  // splice in a piece of another corpus input
        const std::string& o = corpus_[below(corpus_.size())];
        if (!o.empty()) {
          const size_t from = below(o.size());
          const std::string piece = o.substr(from, 1 + below(std::min<size_t>(128, o.size() - from)));
          if (rng_() & 1) s->insert(below(n + 1), piece);
          else if (n) s->replace(at, std::min(piece.size(), n - at), piece);
        }
        break;
      }
      case 7:
      case 8:  // a dictionary token, inserted or written over
        if (!dictionary_.empty()) {
          const std::string& w = dictionary_[below(dictionary_.size())];
          if (rng_() & 1 || n == 0) s->insert(below(n + 1), w);
          else s->replace(at, std::min(w.size(), n - at), w);
          break;
        }
        [[fallthrough]];
      default:  // the target's structure-aware edit
        if (cmoe_fuzz_mutate != nullptr) {
          const size_t max = n + 64;
          s->resize(max);
          s->resize(cmoe_fuzz_mutate(reinterpret_cast<uint8_t*>(s->data()), n, max, rng_()));
        } else if (n) {
          (*s)[at] = static_cast<char>((*s)[at] + 1);
        }
        break;
    }
  }

  std::mt19937_64 rng_;
  const std::vector<std::string>& corpus_;
  std::vector<std::string> dictionary_;
};

void usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s [--seed S] [--runs N] [--seconds T] [--crash-dir DIR] CORPUS_FILE_OR_DIR...\n", argv0);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string name = fs::path(argv[0]).filename().string();
  uint64_t seed = 0;
  bool have_seed = false;
  long long runs = -1;
  double seconds = -1;
  std::string crash_dir = ".";
  std::vector<fs::path> roots;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        usage(argv[0]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--seed") seed = std::strtoull(value(), nullptr, 10), have_seed = true;
    else if (a == "--runs") runs = std::strtoll(value(), nullptr, 10);
    else if (a == "--seconds") seconds = std::strtod(value(), nullptr);
    else if (a == "--crash-dir") crash_dir = value();
    else if (a.rfind("--", 0) == 0) return usage(argv[0]), 2;
    else roots.emplace_back(a);
  }
  if (!have_seed && std::getenv("CMOE_FUZZ_SEED") != nullptr) {
    seed = std::strtoull(std::getenv("CMOE_FUZZ_SEED"), nullptr, 10), have_seed = true;
  }
  if (!have_seed) {  // a fresh search every run; printed below so that it can be replayed
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    seed = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(now).count()) ^
           (static_cast<uint64_t>(::getpid()) << 32);
    seed %= 1000000000000ULL;  // short enough to copy from a log
  }
  if (runs < 0 && seconds < 0) runs = 10000;

  // The corpus, sorted so that a seed means the same mutants everywhere; regressions first.
  std::vector<fs::path> files;
  for (const fs::path& r : roots) {
    if (fs::is_directory(r)) {
      for (const auto& e : fs::recursive_directory_iterator(r))
        if (e.is_regular_file() && e.path().filename().string()[0] != '.' && e.path().extension() != ".md")
          files.push_back(e.path());
    } else if (fs::is_regular_file(r)) {
      files.push_back(r);
    } else {
      std::fprintf(stderr, "%s: %s: no such file or directory\n", name.c_str(), r.c_str());
      return 2;
    }
  }
  std::sort(files.begin(), files.end());
  std::stable_partition(files.begin(), files.end(), [](const fs::path& p) {
    return p.parent_path().filename() == "regressions";
  });
  if (files.empty()) {
    usage(argv[0]);
    return 2;
  }
  std::vector<std::string> corpus;
  for (const fs::path& f : files) corpus.push_back(read_all(f));

  std::printf("%s: seed %llu (replay: %s --seed %llu --runs N CORPUS...)\n", name.c_str(),
              static_cast<unsigned long long>(seed), name.c_str(), static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  std::signal(SIGABRT, on_fatal_signal);
  std::signal(SIGSEGV, on_fatal_signal);
  std::signal(SIGBUS, on_fatal_signal);
  std::signal(SIGFPE, on_fatal_signal);
  std::signal(SIGILL, on_fatal_signal);
  std::signal(SIGALRM, on_fatal_signal);
  if (__sanitizer_set_death_callback != nullptr) __sanitizer_set_death_callback(on_sanitizer_death);

  auto run = [&](const std::string& input, const std::string& label) {
    std::snprintf(g_crash.path, sizeof(g_crash.path), "%s/crash-%s-%s", crash_dir.c_str(), name.c_str(), label.c_str());
    g_crash.input = &input;
    ::alarm(kInputTimeoutS);
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
    ::alarm(0);
    g_crash.input = nullptr;
  };
  size_t regressions = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    regressions += files[f].parent_path().filename() == "regressions";
    run(corpus[f], "corpus-" + files[f].filename().string());
  }
  Mutator mutator(seed, corpus);
  const auto start = std::chrono::steady_clock::now();
  long long k = 0;
  for (; runs < 0 || k < runs; ++k) {
    if (seconds >= 0 && (k & 63) == 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >= seconds) {
      break;
    }
    const std::string m = mutator.mutant();
    run(m, std::to_string(seed) + "-" + std::to_string(k));
  }
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%s: %zu corpus inputs (%zu regressions) and %lld mutants of seed %llu in %.1f s: no crash\n", name.c_str(),
              files.size(), regressions, k, static_cast<unsigned long long>(seed), took);
  return 0;
}
