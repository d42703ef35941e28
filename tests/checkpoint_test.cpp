// checkpoint_test.cpp — the sharded checkpoint library: two writers' row slices committed into
// one checkpoint read back by any row range (across entry boundaries, bit for bit); the
// manifest checks at open (a missing shard file, a gap or an overlap between slices, a
// truncated file); a flipped byte caught by the CRC of the entry that holds it; commit order
// (nothing is `latest` before commit; keep_last retention); a staging leftover replaced; the
// manifest's own CRC-32C (every single changed byte refused, by every reader), `latest` and
// manifest.txt unable to disagree with it unnoticed; a failed save leaves no staging directory.
#include "checkpoint/checkpoint.h"
#include "checkpoint/crc32c.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <vector>

namespace cmoe {
namespace {

namespace fs = std::filesystem;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = (fs::temp_directory_path() / ("cmoe_checkpoint_test_" + std::to_string(::getpid()) + "_" +
                                          ::testing::UnitTest::GetInstance()->current_test_info()->name()))
                .string();
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  static Tensor ramp(const Shape& s, float base) {
    Tensor t = Tensor::empty(s, DType::kF32);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = base + static_cast<float>(i) * 0.25f;
    return t;
  }

  // Global tensors: w (6, 3, 2) split as rows [0, 2) by writer A and [2, 6) by writer B;
  // b (5) whole in writer B. Returns the checkpoint directory.
  std::string save_two_writers(int64_t step, bool skip_rows_2_to_4 = false, bool overlap = false) {
    auto tmp = checkpoint_prepare(root_, step);
    EXPECT_TRUE(tmp.ok()) << tmp.status();
    const Shape g{6, 3, 2};
    std::vector<ShardTensor> a = {{"w", w_.slice0(0, overlap ? 3 : 2), g, 0}};
    std::vector<ShardTensor> b;
    if (skip_rows_2_to_4) b.push_back({"w", w_.slice0(4, 6), g, 4});
    else b.push_back({"w", w_.slice0(2, 6), g, 2});
    b.push_back({"b", b_, b_.shape(), 0});
    auto ea = checkpoint_write_shard(*tmp, "shard_a.bin", a);
    auto eb = checkpoint_write_shard(*tmp, "shard_b.bin", b);
    EXPECT_TRUE(ea.ok() && eb.ok());
    checkpoint::Manifest meta;
    meta.set_step(step);
    for (auto* es : {&*ea, &*eb})
      for (auto& e : *es) *meta.add_tensors() = e;
    auto before = checkpoint_latest(root_);
    EXPECT_TRUE(!before.ok() || *before != root_ + "/" + checkpoint_step_name(step)) << "latest moved before commit";
    EXPECT_FALSE(fs::exists(root_ + "/" + checkpoint_step_name(step))) << "step directory before commit";
    auto dir = checkpoint_commit(root_, meta, 2);
    EXPECT_TRUE(dir.ok()) << dir.status();
    return dir.ok() ? *dir : std::string();
  }

  std::string root_;
  Tensor w_ = ramp({6, 3, 2}, 1.0f), b_ = ramp({5}, -3.0f);
};

// CRC-32C: the known answer ("123456789" -> e3069283), and the three-stream fast path against a
// bitwise reference at lengths around its 12 KiB rounds, at odd offsets and extended in pieces.
uint32_t crc32c_bitwise(uint32_t crc, const uint8_t* p, size_t n) {
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
  }
  return ~crc;
}

TEST(Crc32c, MatchesBitwiseReference) {
  EXPECT_EQ(crc32c("123456789", 9), 0xe3069283u);
  std::vector<uint8_t> buf(3 * 12288 + 77);
  uint32_t x = 12345;
  for (uint8_t& b : buf) b = static_cast<uint8_t>((x = x * 1103515245u + 12345u) >> 16);
  for (size_t off : {size_t{0}, size_t{3}}) {
    for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{12287}, size_t{12288}, size_t{12289}, size_t{24576 + 5},
                     buf.size() - off}) {
      EXPECT_EQ(crc32c(buf.data() + off, n), crc32c_bitwise(0, buf.data() + off, n)) << "offset " << off << " length " << n;
    }
  }
  const size_t cut = 12290;  // extend across a round boundary
  EXPECT_EQ(crc32c_extend(crc32c(buf.data(), cut), buf.data() + cut, buf.size() - cut),
            crc32c_bitwise(0, buf.data(), buf.size()));
}

TEST_F(CheckpointTest, TwoWritersReadBackByAnyRows) {
  const std::string dir = save_two_writers(7);
  auto latest = checkpoint_latest(root_);
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(*latest, root_ + "/step_00000007");
  auto r = CheckpointReader::open(dir);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->manifest().format_version(), kCheckpointFormatVersion);
  ASSERT_NE((*r)->find("w"), nullptr);
  EXPECT_EQ((*r)->find("w")->entries.size(), 2u);
  // Every row range, including ones spanning both writers' entries.
  for (int64_t lo = 0; lo < 6; ++lo) {
    for (int64_t hi = lo + 1; hi <= 6; ++hi) {
      Tensor out = Tensor::zeros({hi - lo, 3, 2}, DType::kF32);
      ASSERT_TRUE((*r)->read_rows("w", lo, out).ok()) << lo << ":" << hi;
      EXPECT_EQ(std::memcmp(out.raw_data(), w_.slice0(lo, hi).raw_data(), out.nbytes()), 0) << lo << ":" << hi;
    }
  }
  auto b = (*r)->read("b");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(std::memcmp(b->raw_data(), b_.raw_data(), b_.nbytes()), 0);
  auto bytes = (*r)->verify_all();
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes, w_.nbytes() + b_.nbytes());
  // Wrong trailing dims, dtype or range: refused, naming the tensor.
  Tensor bad = Tensor::zeros({2, 2, 3}, DType::kF32);
  absl::Status st = (*r)->read_rows("w", 0, bad);
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
  EXPECT_NE(st.message().find("tensor w"), std::string::npos) << st;
  Tensor past = Tensor::zeros({2, 3, 2}, DType::kF32);
  EXPECT_FALSE((*r)->read_rows("w", 5, past).ok());
  EXPECT_TRUE(absl::IsNotFound((*r)->read_rows("nope", 0, past)));
}

TEST_F(CheckpointTest, MissingShardFileNamed) {
  const std::string dir = save_two_writers(3);
  fs::remove(dir + "/shard_a.bin");
  auto r = CheckpointReader::open(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("missing checkpoint file " + dir + "/shard_a.bin (tensor w)"), std::string::npos)
      << r.status();
}

TEST_F(CheckpointTest, GapBetweenSlicesIsAMissingShard) {
  const std::string dir = save_two_writers(3, /*skip_rows_2_to_4=*/true);
  auto r = CheckpointReader::open(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("tensor w: rows [2, 4) are in no file (a missing shard?)"), std::string::npos)
      << r.status();
}

TEST_F(CheckpointTest, OverlappingSlicesRefused) {
  const std::string dir = save_two_writers(3, false, /*overlap=*/true);
  auto r = CheckpointReader::open(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("tensor w: rows [2, 3) are in two entries (the second in shard_b.bin)"),
            std::string::npos)
      << r.status();
}

TEST_F(CheckpointTest, TruncatedShardNamedAtOpen) {
  const std::string dir = save_two_writers(3);
  fs::resize_file(dir + "/shard_b.bin", fs::file_size(dir + "/shard_b.bin") - 1);
  auto r = CheckpointReader::open(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("shard_b.bin tensor b: needs bytes"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("(truncated?)"), std::string::npos) << r.status();
}

TEST_F(CheckpointTest, FlippedByteCaughtByItsEntryOnly) {
  const std::string dir = save_two_writers(3);
  {
    std::fstream f(dir + "/shard_b.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8);  // inside w's rows [2, 6) (offset 0)
    f.put('\x7f');
  }
  auto r = CheckpointReader::open(dir);
  ASSERT_TRUE(r.ok()) << r.status();  // sizes are fine: the damage shows when read
  Tensor first = Tensor::zeros({2, 3, 2}, DType::kF32);
  EXPECT_TRUE((*r)->read_rows("w", 0, first).ok()) << "rows [0, 2) live in the intact shard_a.bin";
  Tensor all = Tensor::zeros({6, 3, 2}, DType::kF32);
  absl::Status st = (*r)->read_rows("w", 0, all);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("shard_b.bin tensor w at offset 0: CRC-32C"), std::string::npos) << st;
  EXPECT_FALSE((*r)->verify_all().ok());
}

// The reader streams files in 8 MiB O_DIRECT blocks with reads ahead, or reads buffered
// (direct_io false, or a file system that refuses O_DIRECT): entries that straddle block
// boundaries, read forward, in reverse and by row ranges, come back bit for bit; a flipped byte
// in a later block of a large entry is caught and named; both paths behave the same.
void check_streamed_reads(const std::string& root, bool direct_io) {
  // 3.5M + 7 floats (14 MB: two blocks), then a small tensor, then another 2.3M floats, so
  // entries start at unaligned offsets inside blocks.
  Tensor big = Tensor::empty({3500007}, DType::kF32), small = Tensor::empty({5, 3}, DType::kF32),
         tail = Tensor::empty({2300000}, DType::kF32);
  for (Tensor* t : {&big, &small, &tail})
    for (int64_t i = 0; i < t->numel(); ++i) t->data<float>()[i] = static_cast<float>(i % 9973) * 0.5f + t->numel();
  checkpoint::Manifest meta;
  meta.set_step(1);
  auto dir = checkpoint_save(root, meta, {{"big", big}, {"small", small}, {"tail", tail}}, 1);
  ASSERT_TRUE(dir.ok()) << dir.status();
  auto same = [](const Tensor& a, const Tensor& b) { return std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0; };
  {
    auto r = CheckpointReader::open(*dir, direct_io);
    ASSERT_TRUE(r.ok()) << r.status();
    for (const char* order : {"forward", "reverse"}) {
      std::vector<std::pair<std::string, const Tensor*>> names = {{"big", &big}, {"small", &small}, {"tail", &tail}};
      if (std::string(order) == "reverse") std::reverse(names.begin(), names.end());
      for (const auto& [name, want] : names) {
        auto got = (*r)->read(name);
        ASSERT_TRUE(got.ok()) << order << " " << name << ": " << got.status();
        EXPECT_TRUE(same(*got, *want)) << order << " " << name;
      }
    }
    Tensor rows = Tensor::empty({1000}, DType::kF32);  // an inner range of big: a whole-entry read
    ASSERT_TRUE((*r)->read_rows("big", 3000000, rows).ok());
    EXPECT_EQ(std::memcmp(rows.raw_data(), big.data<float>() + 3000000, rows.nbytes()), 0);
    EXPECT_TRUE((*r)->verify_all().ok());
  }
  {  // one byte of big's second block changed: its CRC catches it, the other tensors still read
    std::fstream f(*dir + "/tensors.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(12 << 20);
    const char c = static_cast<char>(f.get());
    f.seekp(12 << 20);
    f.put(static_cast<char>(c ^ 0x10));
  }
  auto r = CheckpointReader::open(*dir, direct_io);
  ASSERT_TRUE(r.ok()) << r.status();
  auto bad = (*r)->read("big");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("tensors.bin tensor big at offset 0: CRC-32C"), std::string::npos) << bad.status();
  auto ok = (*r)->read("tail");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(same(*ok, tail));
}

TEST_F(CheckpointTest, StreamedReadsAcrossBlocks) { check_streamed_reads(root_, true); }
TEST_F(CheckpointTest, BufferedReadsAcrossBlocks) { check_streamed_reads(root_, false); }

TEST_F(CheckpointTest, RetentionAndLeftoverStaging) {
  // A leftover staging directory of step 2 (a crashed save) is replaced, not merged; one of
  // step 9 (a crash in a run that then resumed from an earlier step) goes at the next save.
  fs::create_directories(root_ + "/.tmp-step_00000002");
  std::ofstream(root_ + "/.tmp-step_00000002/junk.bin") << "junk";
  fs::create_directories(root_ + "/.tmp-step_00000009");
  std::ofstream(root_ + "/.tmp-step_00000009/junk.bin") << "junk";
  save_two_writers(1);
  EXPECT_FALSE(fs::exists(root_ + "/.tmp-step_00000009")) << "a crashed save's leftover outlived the next save";
  save_two_writers(2);
  EXPECT_FALSE(fs::exists(root_ + "/step_00000002/junk.bin"));
  save_two_writers(3);
  EXPECT_FALSE(fs::exists(root_ + "/step_00000001")) << "keep_last 2";
  EXPECT_TRUE(fs::exists(root_ + "/step_00000002"));
  auto latest = checkpoint_latest(root_);
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(*latest, root_ + "/step_00000003");
}

// The asynchronous path (snapshot image, O_DIRECT write where the file system allows it) writes
// the same bytes and entries as the direct path, and the snapshot does not see later writes to
// the live tensors.
TEST_F(CheckpointTest, ImageWritesTheSameShard) {
  fs::create_directories(root_);
  const Shape g{6, 3, 2};
  // w2 (20 MB) spans several 8 MiB staging buffers of the streaming writer.
  std::vector<ShardTensor> ts = {{"w", w_.slice0(1, 4), g, 1},
                                 {"b", b_, b_.shape(), 0},
                                 {"w2", ramp({5'000'000}, 7.0f), Shape{5'000'000}, 0},
                                 {"w3", ramp({1000, 3}, 9.0f), Shape{1000, 3}, 0}};
  auto direct = checkpoint_write_shard(root_, "direct.bin", ts);
  ASSERT_TRUE(direct.ok()) << direct.status();
  auto image = checkpoint_shard_image("image.bin", ts);
  ASSERT_TRUE(image.ok()) << image.status();
  const float before = b_.data<float>()[0];
  b_.data<float>()[0] = 1e9f;  // training goes on after the snapshot
  auto written = checkpoint_write_image(root_, *image, 5);
  b_.data<float>()[0] = before;
  ASSERT_TRUE(written.ok()) << written.status();
  ASSERT_EQ(written->size(), direct->size());
  for (size_t i = 0; i < direct->size(); ++i) {
    EXPECT_EQ((*written)[i].offset(), (*direct)[i].offset());
    EXPECT_EQ((*written)[i].crc32c(), (*direct)[i].crc32c()) << (*direct)[i].name();
    EXPECT_EQ((*written)[i].file(), "image.bin");
  }
  auto slurp = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const std::string a = slurp(root_ + "/direct.bin"), b = slurp(root_ + "/image.bin");
  EXPECT_EQ(a.size(), image->size);
  EXPECT_TRUE(a == b) << "image file differs from the directly written one (" << a.size() << " vs " << b.size() << " bytes)";
}

// Format 1 (one tensors.bin, whole tensors, no layout) is still read; a newer format is refused
// naming the version.
TEST_F(CheckpointTest, FormatVersions) {
  checkpoint::Manifest meta;
  meta.set_step(2);
  auto dir = checkpoint_save(root_, meta, {{"w", w_}}, 1);
  ASSERT_TRUE(dir.ok());
  // What an older cmoe wrote: the manifest alone, no checksum field.
  auto saved = CheckpointReader::open(*dir);
  ASSERT_TRUE(saved.ok()) << saved.status();
  const checkpoint::Manifest original = (*saved)->manifest();
  auto rewrite = [&](uint32_t version) {
    checkpoint::Manifest m = original;
    m.set_format_version(version);
    m.clear_manifest_crc32c();
    if (version == 1) m.clear_layout();
    std::ofstream(*dir + "/manifest.pb", std::ios::binary | std::ios::trunc) << m.SerializeAsString();
  };
  rewrite(2);
  auto v2 = checkpoint_load(*dir);
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_FALSE(v2->manifest.has_manifest_crc32c());
  rewrite(1);
  auto v1 = checkpoint_load(*dir);
  ASSERT_TRUE(v1.ok()) << v1.status();
  EXPECT_EQ(std::memcmp(v1->tensors.at("w").raw_data(), w_.raw_data(), w_.nbytes()), 0);
  // Format 3 requires the checksum: one without it is damage, not an old checkpoint.
  rewrite(3);
  auto bare = CheckpointReader::open(*dir);
  ASSERT_FALSE(bare.ok());
  EXPECT_NE(bare.status().message().find("does not end in its manifest_crc32c field"), std::string::npos) << bare.status();
  rewrite(kCheckpointFormatVersion + 1);
  auto future = CheckpointReader::open(*dir);
  ASSERT_FALSE(future.ok());
  EXPECT_NE(future.status().message().find("format_version " + std::to_string(kCheckpointFormatVersion + 1)),
            std::string::npos)
      << future.status();
}

// Without O_DIRECT (checkpoint.direct_io false, or a file system refusing it) both writers use
// ordinary writes and produce the same files.
TEST_F(CheckpointTest, WritesWithoutDirectIo) {
  const std::string dir = root_ + "/buffered";
  fs::create_directories(dir);
  std::vector<ShardTensor> ts = {{"w", w_, w_.shape(), 0}, {"big", ramp({3'000'000}, 1.0f), Shape{3'000'000}, 0}};
  auto direct = checkpoint_write_shard(dir, "a.bin", ts, -1, /*direct_io=*/false);
  auto image = checkpoint_shard_image("b.bin", ts);
  ASSERT_TRUE(direct.ok() && image.ok());
  auto written = checkpoint_write_image(dir, *image, -1, /*direct_io=*/false);
  ASSERT_TRUE(written.ok()) << written.status();
  checkpoint::Manifest meta;
  for (const auto& e : *direct) *meta.add_tensors() = e;
  std::ofstream(dir + "/manifest.pb", std::ios::binary) << checkpoint_manifest_bytes(&meta);
  auto r = CheckpointReader::open(dir);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE((*r)->verify_all().ok());
  EXPECT_EQ(fs::file_size(dir + "/a.bin"), fs::file_size(dir + "/b.bin"));
  EXPECT_EQ((*written)[1].crc32c(), (*direct)[1].crc32c());
}

TEST_F(CheckpointTest, SingleWriterSaveLoad) {
  checkpoint::Manifest meta;
  meta.set_step(4);
  auto* c = meta.add_counters();
  c->set_name("data.consumed_samples");
  c->set_value(99);
  auto dir = checkpoint_save(root_, meta, {{"w", w_}, {"b", b_}}, 1);
  ASSERT_TRUE(dir.ok()) << dir.status();
  auto ck = checkpoint_load(*dir);
  ASSERT_TRUE(ck.ok()) << ck.status();
  EXPECT_EQ(ck->counter("data.consumed_samples"), 99);
  EXPECT_EQ(std::memcmp(ck->tensors.at("w").raw_data(), w_.raw_data(), w_.nbytes()), 0);
  EXPECT_EQ(ck->manifest.tensors(0).file(), "tensors.bin");
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void put(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// A one-writer checkpoint of step `step` with the counters a run saves (consumed samples 40,
// optimizer steps 10) and a config string.
absl::StatusOr<std::string> save_with_counters(const std::string& root, int64_t step, const Tensor& w, int keep_last = 2) {
  checkpoint::Manifest meta;
  meta.set_step(step);
  meta.set_tokens_seen(40 * 32);
  meta.set_seed(1234);
  meta.set_config("model { vocab_size: 512 }\n");
  auto* c = meta.add_counters();
  c->set_name("data.consumed_samples");
  c->set_value(40);
  c = meta.add_counters();
  c->set_name("optimizer.steps");
  c->set_value(10);
  return checkpoint_save(root, meta, {{"w", w}}, keep_last);
}

// Issue #15 item 1: one changed byte of manifest.pb (a counter 40 -> 44, the step count, the
// version, the checksum itself: any byte, any change) is refused by every reader, naming the
// file; before the checksum a changed counter loaded silently.
TEST_F(CheckpointTest, EveryChangedManifestByteIsRefused) {
  auto dir = save_with_counters(root_, 5, w_);
  ASSERT_TRUE(dir.ok()) << dir.status();
  const std::string path = *dir + "/manifest.pb", good = slurp(path);
  ASSERT_GT(good.size(), 20u);
  // The consumed-samples counter 40 -> 44, the reported case.
  const size_t at = good.find("data.consumed_samples");
  ASSERT_NE(at, std::string::npos);
  const size_t value_at = good.find('\x28', at);  // varint 40 after the name's tag
  ASSERT_NE(value_at, std::string::npos);
  std::string shifted = good;
  shifted[value_at] = '\x2c';
  put(path, shifted);
  auto r = CheckpointReader::open(*dir);
  ASSERT_FALSE(r.ok()) << "consumed_samples 40 -> 44 loaded";
  EXPECT_NE(r.status().message().find(path + ": CRC-32C of the manifest is"), std::string::npos) << r.status();
  // Every byte, several changes each.
  int refused = 0, tried = 0;
  for (size_t i = 0; i < good.size(); ++i) {
    for (int x : {0x01, 0x04, 0x80, 0xff}) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ x);
      put(path, bad);
      ++tried;
      auto opened = CheckpointReader::open(*dir);
      auto loaded = checkpoint_read_manifest(*dir);
      if (!opened.ok() && !loaded.ok()) {
        ++refused;
        EXPECT_NE(opened.status().message().find(path), std::string::npos) << opened.status();
      } else {
        ADD_FAILURE() << "manifest byte " << i << " ^ " << x << " accepted";
      }
    }
  }
  EXPECT_EQ(refused, tried);
  // Cut short by any number of bytes: refused too.
  for (size_t n = 0; n < good.size(); ++n) {
    put(path, good.substr(0, n));
    EXPECT_FALSE(CheckpointReader::open(*dir).ok()) << "manifest cut to " << n << " bytes accepted";
  }
  put(path, good);
  EXPECT_TRUE(checkpoint_load(*dir).ok());
}

// Issue #15 item 3: an empty or unreadable manifest is an error naming the file, never a
// default manifest.
TEST_F(CheckpointTest, EmptyOrUnreadableManifestNamed) {
  auto dir = save_with_counters(root_, 2, w_);
  ASSERT_TRUE(dir.ok()) << dir.status();
  const std::string path = *dir + "/manifest.pb";
  put(path, "");
  auto empty = checkpoint_read_manifest(*dir);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find(path + ": empty (0 bytes)"), std::string::npos) << empty.status();
  EXPECT_FALSE(CheckpointReader::open(*dir).ok());
  fs::remove(path);
  fs::create_directory(path);
  auto not_file = checkpoint_read_manifest(*dir);
  ASSERT_FALSE(not_file.ok());
  EXPECT_NE(not_file.status().message().find(path + ": not a regular file"), std::string::npos) << not_file.status();
}

// `latest` carries the manifest's CRC: a damaged `latest` naming another (older, intact)
// checkpoint is refused instead of resumed from; a one-line `latest` is still accepted; a
// directory whose manifest is of another step is refused.
TEST_F(CheckpointTest, LatestAndDirectoryCannotDisagreeWithTheManifest) {
  ASSERT_TRUE(save_with_counters(root_, 1, w_).ok());
  auto dir2 = save_with_counters(root_, 2, w_);
  ASSERT_TRUE(dir2.ok());
  const std::string latest = slurp(root_ + "/latest");
  auto m2 = checkpoint_read_manifest(*dir2);
  ASSERT_TRUE(m2.ok()) << m2.status();
  char crc[9];
  std::snprintf(crc, sizeof(crc), "%08x", m2->manifest_crc32c());
  EXPECT_EQ(latest, std::string("step_00000002\nmanifest_crc32c ") + crc + "\n");
  ASSERT_TRUE(checkpoint_latest(root_).ok());

  std::string older = latest;
  older[12] = '1';  // step_00000002 -> step_00000001, which exists and is intact
  put(root_ + "/latest", older);
  auto l = checkpoint_latest(root_);
  ASSERT_FALSE(l.ok()) << "a damaged latest resumed from " << *l;
  EXPECT_NE(l.status().message().find("latest: names step_00000001 with manifest_crc32c " + std::string(crc)),
            std::string::npos)
      << l.status();
  std::string bad_crc = latest;
  bad_crc[bad_crc.size() - 2] ^= 1;
  put(root_ + "/latest", bad_crc);
  EXPECT_FALSE(checkpoint_latest(root_).ok());
  put(root_ + "/latest", "step_00000001\n");  // chosen by hand: fine
  auto chosen = checkpoint_latest(root_);
  ASSERT_TRUE(chosen.ok()) << chosen.status();
  EXPECT_EQ(*chosen, root_ + "/step_00000001");
  put(root_ + "/latest", "step_00000001\ngarbage\n");
  EXPECT_FALSE(checkpoint_latest(root_).ok());

  fs::rename(*dir2, root_ + "/step_00000007");
  put(root_ + "/latest", "step_00000007\n");
  auto moved = checkpoint_latest(root_);
  ASSERT_TRUE(moved.ok());
  auto r = CheckpointReader::open(*moved);
  ASSERT_FALSE(r.ok()) << "step_00000007 holding step 2 loaded";
  EXPECT_NE(r.status().message().find("the manifest is of step 2 but its directory is step_00000007"), std::string::npos)
      << r.status();
}

// manifest.txt carries the manifest's CRC and must say what manifest.pb says.
TEST_F(CheckpointTest, ManifestTextMustAgree) {
  auto dir = save_with_counters(root_, 3, w_);
  ASSERT_TRUE(dir.ok());
  auto m = checkpoint_read_manifest(*dir);
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(checkpoint_check_manifest_text(*dir, *m).ok());
  const std::string text = slurp(*dir + "/manifest.txt");
  char crc[9];
  std::snprintf(crc, sizeof(crc), "%08x", m->manifest_crc32c());
  EXPECT_NE(text.find(crc), std::string::npos) << text;
  std::string edited = text;
  const size_t at = edited.find("value: 40");
  ASSERT_NE(at, std::string::npos) << text;
  edited.replace(at, 9, "value: 44");
  put(*dir + "/manifest.txt", edited);
  absl::Status st = checkpoint_check_manifest_text(*dir, *m);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("manifest.txt: disagrees with manifest.pb"), std::string::npos) << st;
  fs::remove(*dir + "/manifest.txt");
  EXPECT_FALSE(checkpoint_check_manifest_text(*dir, *m).ok());
}

// Issue #15 item 6: a save that fails part-way (here: the file-size limit, as a full disk
// would) removes its .tmp-step_N; the previous checkpoint stays latest and loads.
TEST_F(CheckpointTest, FailedSaveRemovesItsStagingDirectory) {
  ASSERT_TRUE(save_with_counters(root_, 1, w_).ok());
  struct rlimit old_limit;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of death, as ENOSPC would be
  struct rlimit small = old_limit;
  small.rlim_cur = 64 << 10;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  auto failed = save_with_counters(root_, 2, ramp({1 << 20}, 0.5f));
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  std::signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(failed.ok()) << "a 4 MB shard written under a 64 KiB file-size limit";
  EXPECT_FALSE(fs::exists(root_ + "/.tmp-step_00000002")) << "failed save left its staging directory";
  EXPECT_FALSE(fs::exists(root_ + "/step_00000002"));
  auto latest = checkpoint_latest(root_);
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(*latest, root_ + "/step_00000001");
  EXPECT_TRUE(checkpoint_load(*latest).ok());
  // checkpoint_abort on a step with no staging directory is harmless.
  checkpoint_abort(root_, 9);
}

// Sizes in a manifest that would wrap around 64 bits are refused at open, not trusted: a shape
// whose element count overflows (its byte count wrapping to the entry's 0 bytes), and an offset
// whose end wraps past 2^64 (found by reading the open checks for the manifest fuzz target).
TEST_F(CheckpointTest, WrappingSizesRefused) {
  auto dir = save_with_counters(root_, 4, w_);
  ASSERT_TRUE(dir.ok()) << dir.status();
  auto saved = checkpoint_read_manifest(*dir);
  ASSERT_TRUE(saved.ok());
  auto rewrite = [&](const std::function<void(checkpoint::TensorEntry*)>& edit) {
    checkpoint::Manifest m = *saved;
    edit(m.mutable_tensors(0));
    put(*dir + "/manifest.pb", checkpoint_manifest_bytes(&m));
    return CheckpointReader::open(*dir);
  };
  auto huge = rewrite([](checkpoint::TensorEntry* e) {
    e->clear_shape(), e->add_shape(int64_t{1} << 62), e->add_shape(4);
    e->set_slice_begin(0, 0), e->set_slice_end(0, int64_t{1} << 62);
    e->set_nbytes(0);  // (2^62 * 4 * 4) mod 2^64
  });
  ASSERT_FALSE(huge.ok()) << "a 2^64-byte tensor accepted";
  EXPECT_NE(huge.status().message().find("shape [4611686018427387904, 4] has more than 2^58 elements"), std::string::npos)
      << huge.status();
  auto wrap = rewrite([](checkpoint::TensorEntry* e) { e->set_offset(~uint64_t{0} - 7); });
  ASSERT_FALSE(wrap.ok()) << "an offset wrapping past 2^64 accepted";
  EXPECT_NE(wrap.status().message().find("tensor w: needs bytes"), std::string::npos) << wrap.status();
}

}  // namespace
}  // namespace cmoe
