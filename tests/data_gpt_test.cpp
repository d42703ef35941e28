// data_gpt_test.cpp — Megatron-compatible GPT samples: numpy's RandomState stream and shuffle,
// the --split rule, epochs and the separate last epoch, and every sample against a naive
// concatenation of the document_index sequences.
#include <algorithm>
#include <map>
#include <memory>

#include "data/gpt_dataset.h"
#include "tests/data_test_util.h"

namespace cmoe::data {
namespace {

using testing::lcg_documents;
using testing::ScratchDir;
using testing::write_documents;

TEST(NumpyRandomState, StreamIsMt19937InitGenrand) {
  // Published MT19937 values for init_genrand(5489): the first output, and the 10000th
  // (the C++ standard's check value for std::mt19937).
  NumpyRandomState r(5489);
  EXPECT_EQ(r.next_u32(), 3499211612u);
  for (int i = 2; i < 10000; ++i) r.next_u32();
  EXPECT_EQ(r.next_u32(), 4123659995u);
}

TEST(NumpyRandomState, ShuffleByHand) {
  // init_genrand(5489) outputs 3499211612, 581869302, 3890346734, 3586334585, 545404204,
  // 4161255391, 3922919429, 949333985. Shuffling [0, 1, 2, 3, 4, 5]:
  //   i=5 mask 7: 3499211612 & 7 = 4 <= 5          -> swap a5,a4: [0 1 2 3 5 4]
  //   i=4 mask 7: 581869302 & 7 = 6 > 4, reject;
  //               3890346734 & 7 = 6 > 4, reject;
  //               3586334585 & 7 = 1               -> swap a4,a1: [0 5 2 3 1 4]
  //   i=3 mask 3: 545404204 & 3 = 0                -> swap a3,a0: [3 5 2 0 1 4]
  //   i=2 mask 3: 4161255391 & 3 = 3 > 2, reject;
  //               3922919429 & 3 = 1               -> swap a2,a1: [3 2 5 0 1 4]
  //   i=1 mask 1: 949333985 & 1 = 1                -> swap a1,a1: [3 2 5 0 1 4]
  NumpyRandomState r(5489);
  std::vector<int> a = {0, 1, 2, 3, 4, 5};
  r.shuffle(std::span<int>(a));
  EXPECT_EQ(a, (std::vector<int>{3, 2, 5, 0, 1, 4}));
  // The stream advanced by exactly the 8 draws above: the next is the 9th output.
  NumpyRandomState ref(5489);
  for (int i = 0; i < 8; ++i) ref.next_u32();
  EXPECT_EQ(r.next_u32(), ref.next_u32());
}

TEST(NumpyRandomState, MatchesNumpyPermutations) {
  // np.random.seed(s); np.random.permutation(10) (permutation = shuffle of arange) — values
  // widely reproduced in numpy tutorials and documentation.
  const std::map<uint32_t, std::vector<int>> want = {
      {0, {2, 8, 4, 9, 1, 6, 7, 3, 0, 5}},
      {42, {8, 1, 5, 0, 7, 2, 9, 4, 3, 6}},
  };
  for (const auto& [seed, perm] : want) {
    NumpyRandomState r(seed);
    std::vector<int> a(10);
    for (int i = 0; i < 10; ++i) a[i] = i;
    r.shuffle(std::span<int>(a));
    EXPECT_EQ(a, perm) << "seed " << seed;
  }
}

TEST(NumpyRandomState, IntervalIsUniformAndBounded) {
  NumpyRandomState r(1234);
  std::vector<int> hist(5, 0);
  for (int i = 0; i < 50000; ++i) {
    const uint64_t v = r.interval(4);
    ASSERT_LE(v, 4u);
    ++hist[v];
  }
  for (int h : hist) EXPECT_NEAR(h, 10000, 400);
  EXPECT_EQ(r.interval(0), 0u);
  // 64-bit path: draws stay within bounds.
  for (int i = 0; i < 100; ++i) EXPECT_LE(r.interval((uint64_t{1} << 40) + 3), (uint64_t{1} << 40) + 3);
}

TEST(SplitRanges, MegatronRule) {
  auto r = split_ranges("969,30,1", 1000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)[0]->begin, 0);
  EXPECT_EQ((*r)[0]->end, 969);
  EXPECT_EQ((*r)[1]->begin, 969);
  EXPECT_EQ((*r)[1]->end, 999);
  EXPECT_EQ((*r)[2]->begin, 999);
  EXPECT_EQ((*r)[2]->end, 1000);
  // Python's round is half-to-even: 0.5 * 5 = 2.5 -> 2, 0.5 * 7 = 3.5 -> 4.
  EXPECT_EQ((*split_ranges("1,1", 5))[0]->end, 2);
  EXPECT_EQ((*split_ranges("1,1", 7))[0]->end, 4);
  // Zero weights give absent splits; a present split may still round to no sequences.
  auto only = split_ranges("100,0,0", 10);
  ASSERT_TRUE(only.ok());
  EXPECT_FALSE((*only)[1].has_value());
  EXPECT_FALSE((*only)[2].has_value());
  auto tiny = split_ranges("969,30,1", 10);
  EXPECT_EQ((*tiny)[0]->end, 10);
  EXPECT_EQ((*tiny)[1]->size(), 0);
  EXPECT_FALSE(split_ranges("1,x", 10).ok());
  EXPECT_FALSE(split_ranges("1,2,3,4", 10).ok());
  EXPECT_FALSE(split_ranges("0,0", 10).ok());
  EXPECT_FALSE(split_ranges("-1,2", 10).ok());
}

// Checks every sample of `g` against the naive definition: sample j = tokens [j*T, j*T+T+1)
// of the document_index sequences concatenated.
void expect_samples_match_concatenation(const GptDataset& g, const std::vector<std::vector<int32_t>>& docs) {
  std::vector<int32_t> stream;
  for (int32_t id : g.document_index()) stream.insert(stream.end(), docs[id].begin(), docs[id].end());
  const int64_t T = g.seq_length();
  EXPECT_EQ(g.size(), (static_cast<int64_t>(stream.size()) - 1) / T);
  std::vector<int32_t> s(static_cast<size_t>(T + 1));
  for (int64_t j = 0; j < g.size(); ++j) {
    ASSERT_TRUE(g.sample_unshuffled(j, s).ok());
    ASSERT_TRUE(std::equal(s.begin(), s.end(), stream.begin() + j * T)) << "sample " << j;
  }
  // The shuffle index is a permutation, and sample(k) reads sample shuffle_index[k].
  std::vector<int64_t> sorted = g.shuffle_index();
  std::sort(sorted.begin(), sorted.end());
  for (int64_t j = 0; j < g.size(); ++j) ASSERT_EQ(sorted[j], j);
  std::vector<int32_t> a(s.size()), b(s.size());
  for (int64_t k : {int64_t{0}, g.size() / 2, g.size() - 1}) {
    ASSERT_TRUE(g.sample(k, a).ok());
    ASSERT_TRUE(g.sample_unshuffled(g.shuffle_index()[k], b).ok());
    EXPECT_EQ(a, b);
  }
}

TEST(GptDataset, SamplesEqualNaiveConcatenationAcrossEpochs) {
  ScratchDir dir("gpt-concat");
  const auto docs = lcg_documents(40, 23, 0, 7);  // includes empty documents
  write_documents(dir.file("d"), docs);
  auto opened = IndexedDataset::open(dir.file("d"));
  ASSERT_TRUE(opened.ok());
  auto ds = std::make_shared<const IndexedDataset>(std::move(*opened));
  int64_t total = 0;
  for (const auto& d : docs) total += static_cast<int64_t>(d.size());
  for (int64_t T : {2, 7, 16, 64}) {
    for (int64_t N : {int64_t{1}, total / T, 3 * total / T + 5}) {
      SCOPED_TRACE(::testing::Message() << "T=" << T << " N=" << N);
      auto g = GptDataset::build(ds, SplitRange{0, 40}, GptDatasetConfig{T, N, 1234});
      ASSERT_TRUE(g.ok()) << g.status();
      EXPECT_GE(g->size(), N);
      EXPECT_GE(g->num_epochs() * total, N * T + 1);
      EXPECT_LT((g->num_epochs() - 1) * total, N * T + 1);
      expect_samples_match_concatenation(*g, docs);
    }
  }
}

TEST(GptDataset, DocumentIndexEpochsAndSeparateFinalEpoch) {
  ScratchDir dir("gpt-epochs");
  std::vector<std::vector<int32_t>> docs(10, std::vector<int32_t>(10, 1));  // 100 tokens per epoch
  write_documents(dir.file("d"), docs);
  auto ds = std::make_shared<const IndexedDataset>(std::move(*IndexedDataset::open(dir.file("d"))));
  // Split [2, 8) holds 60 tokens; 5 samples of T = 10 need 51: one epoch, nothing separate.
  auto one_epoch = GptDataset::build(ds, SplitRange{2, 8}, GptDatasetConfig{10, 5, 99});
  ASSERT_TRUE(one_epoch.ok()) << one_epoch.status();
  EXPECT_EQ(one_epoch->num_epochs(), 1);
  EXPECT_FALSE(one_epoch->separate_final_epoch());
  // All 10 sequences (100 tokens), T = 10, N = 10 needs 101 tokens -> E = 2. Samples without
  // the final epoch: (100 - 1) // 10 = 9, so the final epoch serves 10 - 9 = 1 sample, fewer
  // than int(0.8 * 9) = 7: it is shuffled separately.
  auto g = GptDataset::build(ds, SplitRange{0, 10}, GptDatasetConfig{10, 10, 99});
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->num_epochs(), 2);
  EXPECT_TRUE(g->separate_final_epoch());
  // Each epoch's block holds every sequence id once.
  const auto& di = g->document_index();
  ASSERT_EQ(di.size(), 20u);
  for (int e = 0; e < 2; ++e) {
    std::vector<int32_t> block(di.begin() + 10 * e, di.begin() + 10 * (e + 1));
    std::sort(block.begin(), block.end());
    for (int i = 0; i < 10; ++i) EXPECT_EQ(block[i], i);
  }
  // The shuffle index keeps the first 9 samples (sans final epoch) in [0, 9).
  const auto& sh = g->shuffle_index();
  ASSERT_EQ(sh.size(), 19u);
  for (int k = 0; k < 9; ++k) EXPECT_LT(sh[k], 9);
  for (int k = 9; k < 19; ++k) EXPECT_GE(sh[k], 9);
  // N = 17: from final = 8 >= 7 -> shuffled together.
  auto together = GptDataset::build(ds, SplitRange{0, 10}, GptDatasetConfig{10, 17, 99});
  ASSERT_TRUE(together.ok());
  EXPECT_EQ(together->num_epochs(), 2);
  EXPECT_FALSE(together->separate_final_epoch());
  // The document index consumed the stream first: with one epoch and the same seed it is the
  // numpy shuffle of arange(split).
  auto one = GptDataset::build(ds, SplitRange{0, 10}, GptDatasetConfig{10, 3, 5});
  ASSERT_TRUE(one.ok());
  NumpyRandomState r(5);
  std::vector<int32_t> want(10);
  for (int i = 0; i < 10; ++i) want[i] = i;
  r.shuffle(std::span<int32_t>(want));
  EXPECT_EQ(one->document_index(), want);
  std::vector<int64_t> want_sh(9);
  for (int i = 0; i < 9; ++i) want_sh[i] = i;
  r.shuffle(std::span<int64_t>(want_sh));
  EXPECT_EQ(one->shuffle_index(), want_sh);
}

TEST(GptDataset, RejectsUnusableInputs) {
  ScratchDir dir("gpt-bad");
  write_documents(dir.file("d"), {{1}, {}, {2, 3}});
  auto ds = std::make_shared<const IndexedDataset>(std::move(*IndexedDataset::open(dir.file("d"))));
  EXPECT_FALSE(GptDataset::build(ds, SplitRange{0, 3}, GptDatasetConfig{1, 4, 1}).ok());   // T < 2
  EXPECT_FALSE(GptDataset::build(ds, SplitRange{0, 3}, GptDatasetConfig{2, 0, 1}).ok());   // N < 1
  EXPECT_FALSE(GptDataset::build(ds, SplitRange{0, 4}, GptDatasetConfig{2, 1, 1}).ok());   // range
  EXPECT_FALSE(GptDataset::build(ds, SplitRange{0, 2}, GptDatasetConfig{2, 1, 1}).ok());   // 1 token
  auto ok = GptDataset::build(ds, SplitRange{0, 3}, GptDatasetConfig{2, 4, 1});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->num_epochs(), 3);  // 3 tokens per epoch, 4*2+1 = 9 tokens
}

}  // namespace
}  // namespace cmoe::data
