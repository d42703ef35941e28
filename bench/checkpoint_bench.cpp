// checkpoint_bench.cpp — checkpoint save and load throughput against the disk's own sequential
// write and read speed, measured in the same run on the same directory.
//
// Checkpoint: the cpu-small model's parameters (real names and shapes, initialised) plus both
// AdamW moments for each, saved with checkpoint_save and read back the way a resume does
// (CheckpointReader::open, then read_rows into the run's already allocated tensors; every
// CRC-32C verified) — what `cmoe train` writes every checkpoint.interval steps and reads on
// resume. (checkpoint_load, which allocates fresh tensors for tools, also pays their page
// faults: about 0.25 s for these 579 MB.)
// Disk baselines, per repetition, with the same byte count:
//   write: write() in 8 MiB chunks to a new file, then fsync (what `dd bs=8M conv=fsync` does),
//          with O_DIRECT when the checkpoint is written with it (--direct-io, default 1);
//   read:  the checkpoint's own data file read with O_DIRECT in 8 MiB reads (`dd iflag=direct
//          bs=8M`): the disk's rate whatever the page cache's readahead does. Read and load
//          alternate which goes first (the file just written can read slower while the host
//          still writes it back, and the second read may find it in the host's cache).
// --direct-io 0 also makes the load read through the page cache (kernel readahead).
// Before each read and load the files' pages are dropped from the page cache
// (posix_fadvise(POSIX_FADV_DONTNEED) after fsync; mincore() confirms how much stayed resident),
// so both come from the disk. Each repetition saves a new step directory and deletes
// it after the load, so deleting old checkpoints (retention) is not timed. The asynchronous
// save's two halves are timed too: the snapshot (checkpoint_shard_image: one copy into an
// aligned host image, on the training thread; the buffer allocated in repetition 0 and reused
// after, as a run's saver does) and the background write (checkpoint_write_image:
// CRCs, O_DIRECT write, fsync). Reported: each repetition and the median, MB/s
// (1 MB = 1e6 bytes), save/write and load/read ratios, the time to delete a checkpoint directory
// (retention's cost inside a real save) and CRC-32C throughput in memory.
//
// usage: checkpoint_bench [--dir DIR (default: the build directory)] [--reps 3]
//                         [--config configs/cpu-small.textproto] [--direct-io 1|0]
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/crc32c.h"
#include "checkpoint/file_io.h"
#include "moe/train/config.h"
#include "google/protobuf/text_format.h"
#include "moe/model.h"

namespace cmoe {
namespace {

constexpr size_t kChunk = 8u << 20;

struct Args {
  std::string dir = CMOE_BINARY_DIR "/checkpoint_bench_tmp";
  std::string config = CMOE_SOURCE_DIR "/configs/cpu-small.textproto";
  int reps = 3;
  bool direct_io = true;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "checkpoint_bench: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

// Drops a file's (clean) pages from the page cache; returns the fraction still resident.
double evict(const std::string& path) {
  const fileio::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) die("open " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) die("fstat " + path);
  ::fdatasync(fd.get());
  if (::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED) != 0) die("posix_fadvise " + path);
  double resident = 0;
  if (st.st_size > 0) {
    void* map = ::mmap(nullptr, st.st_size, PROT_READ, MAP_SHARED, fd.get(), 0);
    if (map == MAP_FAILED) die("mmap " + path);
    const long page = ::sysconf(_SC_PAGESIZE);
    std::vector<unsigned char> vec((st.st_size + page - 1) / page);
    if (::mincore(map, st.st_size, vec.data()) != 0) die("mincore " + path);
    resident = static_cast<double>(std::count_if(vec.begin(), vec.end(), [](unsigned char c) { return c & 1; })) /
               static_cast<double>(vec.size());
    ::munmap(map, st.st_size);
  }
  return resident;
}

// Sequential write of `bytes` then fsync; seconds. direct: O_DIRECT from an aligned buffer, as
// the checkpoint writer does (dd oflag=direct), so both leave the data in the same place: on
// this VM the host caches buffered writes but not direct ones, and a later "disk" read of the
// file is only comparable between files written the same way.
double disk_write(const std::string& path, uint64_t bytes, const std::vector<char>& chunk, bool direct) {
  std::unique_ptr<char, void (*)(void*)> aligned(static_cast<char*>(std::aligned_alloc(4096, chunk.size())), std::free);
  std::memcpy(aligned.get(), chunk.data(), chunk.size());
  const auto t0 = std::chrono::steady_clock::now();
  {
    const fileio::Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | (direct ? O_DIRECT : 0), 0644));
    if (fd.get() < 0) die("create " + path);
    const uint64_t total = direct ? (bytes + 4095) / 4096 * 4096 : bytes;
    for (uint64_t done = 0; done < total;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), total - done));
      const ssize_t w = ::write(fd.get(), aligned.get(), n);
      if (w <= 0) die("write " + path);
      done += static_cast<uint64_t>(w);
    }
    if (direct && ::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) die("ftruncate " + path);
    if (::fsync(fd.get()) != 0) die("fsync " + path);
  }
  return seconds_since(t0);
}

// Sequential read of the whole file with O_DIRECT in 8 MiB reads (dd iflag=direct bs=8M): the
// disk's own rate, independent of the page cache's readahead policy; seconds.
double disk_read(const std::string& path, std::vector<char>& buf) {
  std::unique_ptr<char, void (*)(void*)> aligned(static_cast<char*>(std::aligned_alloc(4096, buf.size())), std::free);
  const auto t0 = std::chrono::steady_clock::now();
  {
    const fileio::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT));
    if (fd.get() < 0) die("open " + path);
    while (true) {
      const ssize_t r = ::read(fd.get(), aligned.get(), buf.size());
      if (r < 0) die("read " + path);
      if (r == 0) break;
    }
  }
  return seconds_since(t0);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int run(const Args& a) {
  auto cfg = config_load(a.config, {});
  if (!cfg.ok()) {
    std::fprintf(stderr, "checkpoint_bench: %s\n", std::string(cfg.status().message()).c_str());
    return 1;
  }
  Model model(cfg->model(), cfg->train().seed());
  std::vector<NamedTensor> tensors;
  int64_t params = 0;
  for (const Param& p : model.params()) {
    const Tensor& w = p.var.value();
    params += w.numel();
    tensors.push_back({p.name, w});
  }
  // AdamW moments of the weights' shapes; values unlike the weights (a scaled copy).
  for (const Param& p : model.params()) {
    const std::pair<const char*, float> moments[] = {{"optim.exp_avg.", 0.1f}, {"optim.exp_avg_sq.", 0.01f}};
    for (const auto& [kind, scale] : moments) {
      Tensor m = Tensor::empty(p.var.value().shape(), DType::kF32);
      const float* src = p.var.value().data<float>();
      float* dst = m.data<float>();
      for (int64_t i = 0; i < m.numel(); ++i) dst[i] = src[i] * src[i] * scale + 1e-8f;
      tensors.push_back({std::string(kind) + p.name, m});
    }
  }
  uint64_t bytes = 0;
  for (const NamedTensor& t : tensors) bytes += t.tensor.nbytes();

  std::filesystem::remove_all(a.dir);
  std::filesystem::create_directories(a.dir);
  const std::string raw = a.dir + "/disk_baseline.bin", root = a.dir + "/checkpoints";
  checkpoint::Manifest meta;
  meta.set_seed(cfg->train().seed());
  google::protobuf::TextFormat::PrintToString(*cfg, meta.mutable_config());

  std::vector<char> chunk(kChunk);
  for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<char>(i * 2654435761u >> 13);
  std::printf("checkpoint_bench: %s, %.2fM parameters + 2 AdamW moments = %zu tensors, %.1f MB, dir %s\n",
              a.config.c_str(), params / 1e6, tensors.size(), bytes / 1e6, a.dir.c_str());

  // CRC-32C in memory over the same bytes (an upper bound on verified load throughput).
  const auto tc = std::chrono::steady_clock::now();
  uint32_t crc = 0;
  for (const NamedTensor& t : tensors) crc ^= crc32c(t.tensor.raw_data(), t.tensor.nbytes());
  const double crc_s = seconds_since(tc);

  std::vector<double> w_mbs, r_mbs, s_mbs, l_mbs, d_s, snap_s, img_mbs;
  ShardImage spare;  // the asynchronous saver keeps its snapshot buffer between saves
  std::vector<Tensor> into;  // the resumed run's tensors: allocated and touched before timing
  for (const NamedTensor& t : tensors) into.push_back(Tensor::zeros(t.tensor.shape(), t.tensor.dtype()));
  double worst_resident = 0;
  std::printf("%-4s %14s %14s %14s %14s %14s %12s\n", "rep", "disk write", "ckpt save", "disk read", "ckpt load",
              "async write", "snapshot");
  for (int rep = 0; rep < a.reps; ++rep) {
    const double w = disk_write(raw, bytes, chunk, a.direct_io);
    auto t0 = std::chrono::steady_clock::now();
    meta.set_step(rep + 1);  // a new directory: no old checkpoint is replaced or retired inside the timing
    auto saved = checkpoint_save(root, meta, tensors, /*keep_last=*/a.reps + 1, "tensors.bin", a.direct_io);
    const double s = seconds_since(t0);
    if (!saved.ok()) {
      std::fprintf(stderr, "checkpoint_bench: %s\n", std::string(saved.status().message()).c_str());
      return 1;
    }
    // The disk's read of the checkpoint's own file against the load of it, each after evicting
    // its pages, in alternating order: the file just written can read slower while the host
    // still writes it back, and whichever read comes second may find it in the host's cache.
    const std::string data_file = *saved + "/tensors.bin";
    auto timed_read = [&] {
      for (const std::string& f : {raw, data_file, *saved + "/manifest.pb"}) worst_resident = std::max(worst_resident, evict(f));
      return disk_read(data_file, chunk);
    };
    absl::Status loaded = absl::OkStatus();
    auto timed_load = [&] {
      for (const std::string& f : {raw, data_file, *saved + "/manifest.pb"}) worst_resident = std::max(worst_resident, evict(f));
      const auto tl = std::chrono::steady_clock::now();
      auto reader = CheckpointReader::open(*saved, a.direct_io);
      if (!reader.ok()) loaded = reader.status();
      for (size_t i = 0; loaded.ok() && i < tensors.size(); ++i) loaded = (*reader)->read_rows(tensors[i].name, 0, into[i]);
      return seconds_since(tl);
    };
    double r = 0, l = 0;
    if (rep % 2 == 0) {
      r = timed_read();
      l = timed_load();
    } else {
      l = timed_load();
      r = timed_read();
    }
    if (!loaded.ok()) {
      std::fprintf(stderr, "checkpoint_bench: load failed: %s\n", std::string(loaded.message()).c_str());
      return 1;
    }
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (std::memcmp(into[i].raw_data(), tensors[i].tensor.raw_data(), into[i].nbytes()) != 0) {
        std::fprintf(stderr, "checkpoint_bench: %s read back differs\n", tensors[i].name.c_str());
        return 1;
      }
    }
    // The asynchronous save's halves, into a fresh directory.
    const std::string async_dir = a.dir + "/async";
    std::filesystem::create_directories(async_dir);
    std::vector<ShardTensor> shard;
    for (const NamedTensor& t : tensors) shard.push_back({t.name, t.tensor, t.tensor.shape(), 0});
    t0 = std::chrono::steady_clock::now();
    auto image = checkpoint_shard_image("shard.bin", shard, &spare);  // rep 0 allocates, later ones reuse
    snap_s.push_back(seconds_since(t0));
    if (!image.ok()) return std::fprintf(stderr, "checkpoint_bench: %s\n", std::string(image.status().message()).c_str()), 1;
    t0 = std::chrono::steady_clock::now();
    auto written = checkpoint_write_image(async_dir, *image);
    img_mbs.push_back(bytes / 1e6 / seconds_since(t0));
    if (!written.ok()) return std::fprintf(stderr, "checkpoint_bench: %s\n", std::string(written.status().message()).c_str()), 1;
    std::filesystem::remove_all(async_dir);
    spare = std::move(*image);
    w_mbs.push_back(bytes / 1e6 / w);
    s_mbs.push_back(bytes / 1e6 / s);
    r_mbs.push_back(bytes / 1e6 / r);
    l_mbs.push_back(bytes / 1e6 / l);
    std::printf("%-4d %9.0f MB/s %9.0f MB/s %9.0f MB/s %9.0f MB/s %9.0f MB/s %9.3f s\n", rep, w_mbs.back(), s_mbs.back(),
                r_mbs.back(), l_mbs.back(), img_mbs.back(), snap_s.back());
    std::filesystem::remove(raw);
    t0 = std::chrono::steady_clock::now();
    std::filesystem::remove_all(*saved);
    d_s.push_back(seconds_since(t0));
  }
  const double W = median(w_mbs), S = median(s_mbs), R = median(r_mbs), L = median(l_mbs);
  std::printf("median: save %.0f MB/s vs disk write %.0f MB/s = %.0f%% | load (CRC-verified) %.0f MB/s vs disk read "
              "%.0f MB/s = %.0f%%\n",
              S, W, 100 * S / W, L, R, 100 * L / R);
  std::printf("asynchronous save: snapshot %.3f s on the training thread (%.0f MB/s), background write %.0f MB/s = "
              "%.0f%% of disk write\n",
              median(snap_s), bytes / 1e6 / median(snap_s), median(img_mbs), 100 * median(img_mbs) / W);
  std::printf("deleting one checkpoint directory (what retention does inside checkpoint_save): median %.3f s\n",
              median(d_s));
  std::printf("CRC-32C in memory: %.0f MB/s (crc xor %08x); page cache before reads: at most %.1f%% of a file "
              "resident\n",
              bytes / 1e6 / crc_s, crc, 100 * worst_resident);
  std::filesystem::remove_all(a.dir);
  return 0;
}

}  // namespace
}  // namespace cmoe

int main(int argc, char** argv) {
  cmoe::Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "usage: checkpoint_bench [--dir DIR] [--reps N] [--config FILE]\n");
      return 2;
    }
    if (f == "--dir") {
      a.dir = argv[++i];
    } else if (f == "--reps") {
      a.reps = std::max(1, std::atoi(argv[++i]));
    } else if (f == "--direct-io") {
      a.direct_io = std::atoi(argv[++i]) != 0;
    } else if (f == "--config") {
      a.config = argv[++i];
    } else {
      std::fprintf(stderr, "checkpoint_bench: unknown flag %s\n", f.c_str());
      return 2;
    }
  }
  return cmoe::run(a);
}
