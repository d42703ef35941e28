// data_llmc_test.cpp — llm.c shards as training data (data/llmc_dataset.h). Shards are written
// here by llm.c's rules (a 256 x int32 header [magic, version, n, 0...], then n tokens, each
// document preceded by the delimiter), independently of cmoe's reader. The documents cmoe cuts
// must equal the ones the test wrote; the GPT samples and a blended loader over llm.c shards must
// equal those over a Megatron dataset holding the same documents; errors name file and offset.
#include <cstring>
#include <fstream>

#include "data/gpt_dataset.h"
#include "data/llmc_dataset.h"
#include "data/loader.h"
#include "tests/data_test_util.h"

namespace cmoe::data {
namespace {

using testing::lcg_documents;
using testing::ScratchDir;
using testing::write_documents;

constexpr int32_t kGpt2Eot = 50256;
constexpr int32_t kLlama3Bot = 128000;

// llm.c's write_datafile: header int32[256] = {magic, version, len(tokens), 0, ...}, then the
// tokens as uint16 (GPT-2, magic 20240520, version 1) or uint32 (Llama-3, 20240801, version 7),
// little-endian.
void write_llmc_shard(const std::string& path, const std::vector<int64_t>& tokens, bool llama3 = false) {
  std::vector<int32_t> header(256, 0);
  header[0] = llama3 ? 20240801 : 20240520;
  header[1] = llama3 ? 7 : 1;
  header[2] = static_cast<int32_t>(tokens.size());
  std::vector<uint8_t> bytes(1024);
  for (int i = 0; i < 256; ++i)
    for (int b = 0; b < 4; ++b) bytes[4 * i + b] = static_cast<uint8_t>(static_cast<uint32_t>(header[i]) >> (8 * b));
  const int itemsize = llama3 ? 4 : 2;
  for (int64_t t : tokens)
    for (int b = 0; b < itemsize; ++b) bytes.push_back(static_cast<uint8_t>(static_cast<uint64_t>(t) >> (8 * b)));
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                              static_cast<std::streamsize>(bytes.size()));
}

// Documents of random length [1, 60], ids in [0, 50000) offset by `base`: the token streams below
// are these documents, each preceded by the delimiter.
std::vector<std::vector<int32_t>> documents(int n, int32_t base, uint64_t seed) {
  std::vector<std::vector<int32_t>> docs;
  for (auto& d : lcg_documents(n, 59, 0, seed)) {
    std::vector<int32_t> doc(d.size() + 1);
    for (size_t i = 0; i < d.size(); ++i) doc[i] = base + (d[i] * 53) % 50000;
    doc.back() = base + static_cast<int32_t>(d.size());  // never empty
    docs.push_back(std::move(doc));
  }
  return docs;
}

std::vector<int32_t> read_seq(const SequenceSource& ds, int64_t i) {
  std::vector<int32_t> out(static_cast<size_t>(ds.sequence_length(i)));
  EXPECT_TRUE(ds.read(i, 0, ds.sequence_length(i), out.data()).ok());
  return out;
}

// Three GPT-2 shards of one stream of documents, written as llm.c's fineweb.py does: a document
// that does not fit the shard is split, its tail opening the next shard without a delimiter.
// Also an empty shard in the middle. Returns the documents cmoe must cut, in order.
// `cuts_mid_document` counts the shard starts that are not at a delimiter.
void write_gpt2_glob(const ScratchDir& dir, const std::string& name, std::vector<std::vector<int32_t>>* docs,
                     int* cuts_mid_document = nullptr) {
  std::vector<int64_t> stream;
  for (const auto& d : documents(90, 0, 7)) {
    stream.push_back(kGpt2Eot);
    stream.insert(stream.end(), d.begin(), d.end());
  }
  const size_t cut1 = stream.size() / 3 + 5, cut2 = 2 * stream.size() / 3;
  ASSERT_NE(stream[cut1], kGpt2Eot);  // shard 2 starts mid-document
  write_llmc_shard(dir.file(name + "_train_000001.bin"), {stream.begin(), stream.begin() + cut1});
  write_llmc_shard(dir.file(name + "_train_000002.bin"), {stream.begin() + cut1, stream.begin() + cut2});
  write_llmc_shard(dir.file(name + "_train_000003.bin"), {});
  write_llmc_shard(dir.file(name + "_train_000004.bin"), {stream.begin() + cut2, stream.end()});
  // The expected documents, computed from the stream and the cut points alone.
  docs->clear();
  for (size_t i = 0; i < stream.size(); ++i) {
    if (stream[i] == kGpt2Eot || i == 0 || i == cut1 || i == cut2) docs->emplace_back();
    docs->back().push_back(static_cast<int32_t>(stream[i]));
  }
  if (cuts_mid_document != nullptr) *cuts_mid_document = (stream[cut1] != kGpt2Eot) + (stream[cut2] != kGpt2Eot);
}

TEST(LlmcDataset, GlobOfShardsIsDocumentsCutBeforeEachDelimiter) {
  ScratchDir dir("llmc");
  std::vector<std::vector<int32_t>> want;
  int mid = 0;
  ASSERT_NO_FATAL_FAILURE(write_gpt2_glob(dir, "web", &want, &mid));
  EXPECT_GE(mid, 1);
  write_llmc_shard(dir.file("web_val_000000.bin"), {kGpt2Eot, 1, 2});  // not matched by the glob
  auto ds = LlmcDataset::open(dir.file("web_train_*.bin"));
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->shards().size(), 4u);
  EXPECT_EQ(ds->kind(), LlmcShard::Kind::kGpt2);
  EXPECT_EQ(ds->delimiter(), kGpt2Eot);
  ASSERT_EQ(ds->num_sequences(), static_cast<int64_t>(want.size()));
  int64_t tokens = 0;
  for (int64_t i = 0; i < ds->num_sequences(); ++i) {
    EXPECT_EQ(read_seq(*ds, i), want[i]) << "document " << i;
    tokens += static_cast<int64_t>(want[i].size());
  }
  EXPECT_EQ(ds->num_tokens(), tokens);
  // One document per delimiter, plus one per shard that starts mid-document.
  const auto starts_with_eot = std::count_if(want.begin(), want.end(), [](const auto& d) { return d[0] == kGpt2Eot; });
  EXPECT_EQ(ds->num_sequences(), starts_with_eot + mid);
  EXPECT_EQ(starts_with_eot, 90);
}

TEST(LlmcDataset, SamplesEqualThoseOfTheMegatronDatasetWithTheSameDocuments) {
  ScratchDir dir("llmc");
  std::vector<std::vector<int32_t>> docs;
  ASSERT_NO_FATAL_FAILURE(write_gpt2_glob(dir, "web", &docs));
  write_documents(dir.file("same"), docs);
  auto l = open_sequence_source(dir.file("web_train_*.bin"));
  auto m = open_sequence_source(dir.file("same"));
  ASSERT_TRUE(l.ok() && m.ok()) << l.status() << m.status();
  struct Case {
    int64_t T, N;
    uint32_t seed;
    const char* split;
    Split name;
  };
  for (const Case& c : {Case{16, 100, 1234, "969,30,1", Split::kTrain}, Case{7, 900, 5, "80,20", Split::kTrain},
                        Case{31, 40, 9, "80,20", Split::kValid}, Case{2, 3000, 0, "1", Split::kTrain}}) {
    auto rl = split_ranges(c.split, (*l)->num_sequences());
    auto rm = split_ranges(c.split, (*m)->num_sequences());
    ASSERT_TRUE(rl.ok() && rm.ok());
    const SplitRange range = *(*rl)[static_cast<int>(c.name)];
    auto gl = GptDataset::build(*l, range, {c.T, c.N, c.seed});
    auto gm = GptDataset::build(*m, *(*rm)[static_cast<int>(c.name)], {c.T, c.N, c.seed});
    ASSERT_TRUE(gl.ok() && gm.ok()) << gl.status() << gm.status();
    ASSERT_EQ(gl->size(), gm->size());
    EXPECT_EQ(gl->shuffle_index(), gm->shuffle_index());
    std::vector<int32_t> a(c.T + 1), b(c.T + 1);
    for (int64_t k = 0; k < gl->size(); ++k) {
      ASSERT_TRUE(gl->sample(k, a).ok());
      ASSERT_TRUE(gm->sample(k, b).ok());
      ASSERT_EQ(a, b) << "T " << c.T << " sample " << k;
    }
  }
}

TEST(LlmcDataset, BlendOfMegatronPrefixAndLlmcGlobStreamsLikeTheMegatronEquivalent) {
  ScratchDir dir("llmc");
  std::vector<std::vector<int32_t>> docs;
  ASSERT_NO_FATAL_FAILURE(write_gpt2_glob(dir, "web", &docs));
  write_documents(dir.file("same"), docs);
  write_documents(dir.file("books"), lcg_documents(70, 50, 100, 3));
  LoaderConfig c;
  c.split = "90,10";
  c.seq_length = 12;
  c.micro_batch = 2;
  c.dp_size = 2;
  c.num_samples = 96;
  c.vocab_size = 50304;
  auto rows = [&](const std::string& second, int rank, int64_t resume) {
    LoaderConfig x = c;
    x.sources = {{dir.file("books"), 2.0}, {second, 1.0}};
    x.dp_rank = rank;
    auto l = Loader::open(x, {resume});
    EXPECT_TRUE(l.ok()) << l.status();
    std::vector<Tensor> out;
    for (;;) {
      auto mb = (*l)->next();
      if (!mb.ok()) {
        EXPECT_EQ(mb.status().code(), absl::StatusCode::kOutOfRange) << mb.status();
        break;
      }
      out.push_back(mb->tokens);
    }
    return out;
  };
  for (int rank = 0; rank < 2; ++rank) {
    auto a = rows(dir.file("web_train_*.bin"), rank, 0), b = rows(dir.file("same"), rank, 0);
    ASSERT_EQ(a.size(), 24u);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(std::memcmp(a[i].data<int32_t>(), b[i].data<int32_t>(), a[i].nbytes()), 0) << "batch " << i;
    }
    // Resuming after 10 blocks gives the rest of the uninterrupted stream.
    auto r = rows(dir.file("web_train_*.bin"), rank, 40);
    ASSERT_EQ(r.size(), 14u);
    for (size_t i = 0; i < r.size(); ++i) {
      ASSERT_EQ(std::memcmp(r[i].data<int32_t>(), a[i + 10].data<int32_t>(), r[i].nbytes()), 0) << "batch " << i;
    }
  }
  // Both sources contribute, in Megatron's 2:1 blend.
  LoaderConfig x = c;
  x.sources = {{dir.file("books"), 2.0}, {dir.file("web_train_*.bin"), 1.0}};
  auto b = BlendedSamples::build(x);
  ASSERT_TRUE(b.ok()) << b.status();
  int from_llmc = 0;
  for (int64_t k = 0; k < b->size(); ++k) from_llmc += b->dataset_of(k);
  EXPECT_EQ(from_llmc, 32);
}

TEST(LlmcDataset, Llama3ShardsUseUint32AndBeginOfText) {
  ScratchDir dir("llmc");
  write_llmc_shard(dir.file("l.bin"), {kLlama3Bot, 9906, 100000, kLlama3Bot, kLlama3Bot, 70000, 128255}, true);
  auto ds = LlmcDataset::open(dir.file("l.bin"));
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->kind(), LlmcShard::Kind::kLlama3);
  ASSERT_EQ(ds->num_sequences(), 3);
  EXPECT_EQ(read_seq(*ds, 0), (std::vector<int32_t>{kLlama3Bot, 9906, 100000}));
  EXPECT_EQ(read_seq(*ds, 1), (std::vector<int32_t>{kLlama3Bot}));
  EXPECT_EQ(read_seq(*ds, 2), (std::vector<int32_t>{kLlama3Bot, 70000, 128255}));
  EXPECT_EQ(ds->token_location(2, 1), dir.file("l.bin") + ": at byte " + std::to_string(1024 + 4 * 5));
  // A uint32 id above 2^31 - 1 is refused when the index is built, naming its byte.
  write_llmc_shard(dir.file("big.bin"), {kLlama3Bot, 1, 0x80000000LL}, true);
  auto big = LlmcDataset::open(dir.file("big.bin"));
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("big.bin: at byte 1032"), std::string::npos) << big.status();
}

TEST(LlmcDataset, PathRulesAndErrors) {
  ScratchDir dir("llmc");
  write_llmc_shard(dir.file("a_000000.bin"), {kGpt2Eot, 1, 2});
  write_llmc_shard(dir.file("a_000001.bin"), {kLlama3Bot, 1}, true);
  write_documents(dir.file("m.bin"), {{1, 2, 3}});  // a Megatron prefix that ends in .bin
  EXPECT_TRUE(is_llmc_path(dir.file("a_000000.bin")));
  EXPECT_TRUE(is_llmc_path(dir.file("a_*.bin")));
  EXPECT_TRUE(is_llmc_path(dir.file("a_00000[01].bin")));
  EXPECT_FALSE(is_llmc_path(dir.file("m.bin")));  // m.bin.idx exists
  EXPECT_FALSE(is_llmc_path(dir.file("m")));
  auto m = open_sequence_source(dir.file("m.bin"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->num_tokens(), 3);

  auto none = open_sequence_source(dir.file("zzz_*.bin"));
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(none.status().message().find("zzz_*.bin: no file matches"), std::string::npos) << none.status();
  auto nodir = open_sequence_source(dir.file("no-such-dir/web_*.bin"));
  ASSERT_FALSE(nodir.ok());
  EXPECT_EQ(nodir.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(nodir.status().message().find("no-such-dir: No such file or directory"), std::string::npos)
      << nodir.status();
  auto mixed = open_sequence_source(dir.file("a_*.bin"));
  ASSERT_FALSE(mixed.ok());
  EXPECT_NE(mixed.status().message().find("a_000001.bin: a Llama-3 shard, but"), std::string::npos) << mixed.status();
  auto missing = open_sequence_source(dir.file("gone.bin"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("gone.bin: cannot open"), std::string::npos) << missing.status();
  std::ofstream(dir.file("bad.bin"), std::ios::binary) << std::string(1030, 'x');
  auto bad = open_sequence_source(dir.file("bad.bin"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bad.bin: at byte 0: found magic"), std::string::npos) << bad.status();
}

TEST(LlmcDataset, TokenOutsideVocabularyNamesShardAndByteOffset) {
  ScratchDir dir("llmc");
  std::vector<std::vector<int32_t>> docs;
  ASSERT_NO_FATAL_FAILURE(write_gpt2_glob(dir, "web", &docs));
  LoaderConfig c;
  c.sources = {{dir.file("web_train_*.bin"), 1.0}};
  c.split = "1";
  c.seq_length = 16;
  c.num_samples = 8;
  c.vocab_size = 50000;  // below the delimiter 50256: a window holding one is refused
  auto l = Loader::open(c);
  ASSERT_TRUE(l.ok()) << l.status();
  absl::Status err;
  for (int i = 0; i < 8 && err.ok(); ++i) err = (*l)->next().status();
  ASSERT_FALSE(err.ok());
  EXPECT_EQ(err.code(), absl::StatusCode::kDataLoss);
  // "SHARD: at byte N: global sample ...: found token id X, ...": the bytes at N hold X.
  const std::string msg(err.message());
  const size_t at = msg.find(": at byte ");
  ASSERT_NE(at, std::string::npos) << msg;
  const std::string file = msg.substr(0, at);
  EXPECT_NE(file.find("web_train_00000"), std::string::npos) << msg;
  const int64_t offset = std::stoll(msg.substr(at + 10));
  const size_t id_at = msg.find("found token id ");
  ASSERT_NE(id_at, std::string::npos) << msg;
  const int64_t id = std::stoll(msg.substr(id_at + 15));
  EXPECT_GE(id, 50000);
  std::ifstream f(file, std::ios::binary);
  f.seekg(offset);
  uint8_t b[2] = {0, 0};
  f.read(reinterpret_cast<char*>(b), 2);
  EXPECT_EQ(b[0] | (b[1] << 8), id) << msg;
  EXPECT_NE(msg.find("expected an id in [0, 50000) (model.vocab_size)"), std::string::npos) << msg;
}

}  // namespace
}  // namespace cmoe::data
