// data_loader_test.cpp — the training loader: resuming mid-epoch reproduces the uninterrupted
// stream, the global order is the same for dp = 1, 2, 4, blends follow Megatron's rule, and
// prefetch-thread errors arrive as a Status.
#include <fstream>
#include <memory>

#include "data/loader.h"
#include "tests/data_test_util.h"

namespace cmoe::data {
namespace {

using testing::lcg_documents;
using testing::ScratchDir;
using testing::write_documents;

// Rows of a micro-batch as (T+1)-token samples: tokens row + the last target.
std::vector<std::vector<int32_t>> rows_of(const MicroBatch& mb) {
  const int64_t B = mb.tokens.dim(0), T = mb.tokens.dim(1);
  const int32_t* tok = mb.tokens.data<int32_t>();
  const int32_t* tgt = mb.targets.data<int32_t>();
  std::vector<std::vector<int32_t>> rows;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int32_t> r(tok + b * T, tok + (b + 1) * T);
    for (int64_t t = 0; t + 1 < T; ++t) EXPECT_EQ(tgt[b * T + t], tok[b * T + t + 1]);  // shifted by one
    r.push_back(tgt[b * T + T - 1]);
    rows.push_back(std::move(r));
  }
  return rows;
}

// Every micro-batch a loader yields until it runs out, flattened to rows in yield order.
std::vector<std::vector<int32_t>> drain(Loader* l, int max_batches = 1 << 30) {
  std::vector<std::vector<int32_t>> rows;
  for (int i = 0; i < max_batches; ++i) {
    auto mb = l->next();
    if (!mb.ok()) {
      EXPECT_EQ(mb.status().code(), absl::StatusCode::kOutOfRange) << mb.status();
      break;
    }
    for (auto& r : rows_of(*mb)) rows.push_back(std::move(r));
  }
  return rows;
}

class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write_documents(dir_.file("a"), lcg_documents(60, 40, 0, 1));
    write_documents(dir_.file("b"), lcg_documents(50, 30, 2000, 2));
  }
  LoaderConfig config(int64_t mb, int dp, int rank) const {
    LoaderConfig c;
    c.sources = {{dir_.file("a"), 1.0}};
    c.split = "90,10";
    c.seq_length = 8;
    c.micro_batch = mb;
    c.dp_size = dp;
    c.dp_rank = rank;
    c.num_samples = 64;
    c.seed = 1234;
    c.prefetch = 2;
    return c;
  }
  ScratchDir dir_{"loader"};
};

TEST_F(LoaderTest, YieldsTheGlobalSampleOrder) {
  auto l = Loader::open(config(4, 1, 0));
  ASSERT_TRUE(l.ok()) << l.status();
  auto rows = drain(l->get());
  ASSERT_EQ(rows.size(), 64u);
  std::vector<int32_t> s(9);
  for (int64_t k = 0; k < 64; ++k) {
    ASSERT_TRUE((*l)->samples().sample(k, s).ok());
    EXPECT_EQ(rows[k], s) << "sample " << k;
  }
  EXPECT_EQ((*l)->state().consumed_samples, 64);
  // Exhausted: every further call says so.
  EXPECT_EQ((*l)->next().status().code(), absl::StatusCode::kOutOfRange);
}

TEST_F(LoaderTest, ResumeMidEpochReproducesUninterruptedStream) {
  auto full = Loader::open(config(2, 2, 1));
  ASSERT_TRUE(full.ok());
  const auto want = drain(full->get());
  ASSERT_EQ(want.size(), 32u);  // rank 1 of 2 gets half
  for (int stop_after : {1, 3, 7}) {
    auto first = Loader::open(config(2, 2, 1));
    ASSERT_TRUE(first.ok());
    auto got = drain(first->get(), stop_after);
    const LoaderState saved = (*first)->state();
    EXPECT_EQ(saved.consumed_samples, stop_after * 4);
    first->reset();  // the loader had prefetched ahead; that must not matter
    auto resumed = Loader::open(config(2, 2, 1), saved);
    ASSERT_TRUE(resumed.ok());
    for (auto& r : drain(resumed->get())) got.push_back(std::move(r));
    EXPECT_EQ(got, want) << "stopped after " << stop_after;
  }
  LoaderState bad{3};
  EXPECT_EQ(Loader::open(config(2, 2, 1), bad).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(LoaderTest, GlobalOrderIndependentOfDataParallelSize) {
  auto single = Loader::open(config(2, 1, 0));
  ASSERT_TRUE(single.ok());
  const auto want = drain(single->get());
  for (int dp : {2, 4}) {
    std::vector<std::vector<std::vector<int32_t>>> per_rank(dp);
    for (int r = 0; r < dp; ++r) {
      auto l = Loader::open(config(2, dp, r));
      ASSERT_TRUE(l.ok());
      per_rank[r] = drain(l->get());
    }
    // Reassemble: block i = rank 0's i-th micro-batch, rank 1's, ...
    std::vector<std::vector<int32_t>> global;
    for (size_t blk = 0; blk * 2 < per_rank[0].size(); ++blk) {
      for (int r = 0; r < dp; ++r) {
        global.push_back(per_rank[r][2 * blk]);
        global.push_back(per_rank[r][2 * blk + 1]);
      }
    }
    EXPECT_EQ(global, want) << "dp " << dp;
  }
}

TEST(Blending, MegatronRuleAlternatesOnTiesAndTracksWeights) {
  std::vector<int16_t> di;
  std::vector<int64_t> dsi;
  blending_indices(std::vector<double>{0.5, 0.5}, 6, &di, &dsi);
  EXPECT_EQ(di, (std::vector<int16_t>{0, 1, 0, 1, 0, 1}));
  EXPECT_EQ(dsi, (std::vector<int64_t>{0, 0, 1, 1, 2, 2}));
  const std::vector<double> w = {0.6, 0.3, 0.1};
  blending_indices(w, 10000, &di, &dsi);
  std::vector<int64_t> count(3, 0);
  for (int64_t k = 0; k < 10000; ++k) {
    ASSERT_EQ(dsi[k], count[di[k]]);  // each dataset's samples are taken in order
    ++count[di[k]];
    // The rule keeps every prefix within one sample of its target share.
    for (int i = 0; i < 3; ++i) ASSERT_LE(std::abs(static_cast<double>(count[i]) - w[i] * (k + 1)), 1.0 + 1e-9);
  }
}

TEST_F(LoaderTest, BlendDrawsFromEachDatasetInProportion) {
  LoaderConfig c = config(4, 1, 0);
  c.sources = {{dir_.file("a"), 3.0}, {dir_.file("b"), 1.0}};
  c.num_samples = 400;
  auto l = Loader::open(c);
  ASSERT_TRUE(l.ok()) << l.status();
  const auto rows = drain(l->get());
  ASSERT_EQ(rows.size(), 400u);
  int from_a = 0;
  std::vector<int32_t> s(9);
  for (int64_t k = 0; k < 400; ++k) {
    // Dataset a's ids are < 997, b's are >= 2000.
    const bool is_a = rows[k][0] < 1000;
    EXPECT_EQ(is_a, (*l)->samples().dataset_of(k) == 0);
    for (int32_t t : rows[k]) EXPECT_EQ(t < 1000, is_a);
    from_a += is_a;
    ASSERT_TRUE((*l)->samples().dataset((*l)->samples().dataset_of(k)).sample((*l)->samples().dataset_sample_of(k), s).ok());
    EXPECT_EQ(rows[k], s);
  }
  EXPECT_EQ(from_a, 300);
}

TEST_F(LoaderTest, TokenOutsideVocabularyIsAStatusFromThePrefetchThread) {
  LoaderConfig c = config(4, 1, 0);
  c.vocab_size = 500;  // dataset a holds ids up to 996
  auto l = Loader::open(c);
  ASSERT_TRUE(l.ok());
  absl::Status err;
  for (int i = 0; i < 16 && err.ok(); ++i) err = (*l)->next().status();
  ASSERT_FALSE(err.ok());
  EXPECT_EQ(err.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(err.message().find("a.bin"), std::string::npos) << err;
  EXPECT_NE(err.message().find("expected an id in [0, 500)"), std::string::npos) << err;
  // "a.bin: at byte N: ... found token id X": the uint16 at byte N of a.bin is X.
  const std::string msg(err.message());
  const size_t at = msg.find(".bin: at byte "), id_at = msg.find("found token id ");
  ASSERT_TRUE(at != std::string::npos && id_at != std::string::npos) << msg;
  std::ifstream f(dir_.file("a.bin"), std::ios::binary);
  f.seekg(std::stoll(msg.substr(at + 14)));
  uint8_t b[2] = {0, 0};
  f.read(reinterpret_cast<char*>(b), 2);
  EXPECT_EQ(b[0] | (b[1] << 8), std::stoll(msg.substr(id_at + 15))) << msg;
  EXPECT_EQ((*l)->next().status(), err);  // sticky
}

TEST_F(LoaderTest, BadConfigurationsAreErrors) {
  LoaderConfig c = config(4, 2, 2);
  EXPECT_EQ(Loader::open(c).status().code(), absl::StatusCode::kInvalidArgument);
  c = config(4, 1, 0);
  c.sources[0].prefix = dir_.file("missing");
  EXPECT_EQ(Loader::open(c).status().code(), absl::StatusCode::kNotFound);
  c = config(4, 1, 0);
  c.split = "100,0,0";
  c.split_name = Split::kValid;
  EXPECT_EQ(Loader::open(c).status().code(), absl::StatusCode::kInvalidArgument);
  // A malformed split is named as the config key a run sets (data.split), not as the --split
  // flag of `cmoe data samples`, which `cmoe train` does not have (issue #15 item 7).
  c = config(4, 1, 0);
  c.split = "1,x,0";
  absl::Status st = Loader::open(c).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("data.split '1,x,0': weight 'x' is not a non-negative number"), std::string::npos) << st;
  EXPECT_EQ(st.message().find("--split"), std::string::npos) << st;
}

}  // namespace
}  // namespace cmoe::data
