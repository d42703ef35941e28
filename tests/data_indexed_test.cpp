// data_indexed_test.cpp — Megatron .bin/.idx: write-then-read round trips, a byte-level golden
// file built by hand the way Megatron's builder writes it, every corruption case giving a Status
// that names the file and the byte offset (self-contradicting pointers, sizes and dtype codes
// included), and llm.c shards.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>

#include "data/indexed_dataset.h"
#include "tests/data_test_util.h"

namespace cmoe::data {
namespace {

using testing::ScratchDir;
using testing::write_documents;

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// Little-endian appenders written byte by byte, independent of the code under test.
void le(std::vector<uint8_t>* b, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) b->push_back(static_cast<uint8_t>(v >> (8 * i)));
}

std::vector<int32_t> read_seq(const IndexedDataset& ds, int64_t i) {
  std::vector<int32_t> out(static_cast<size_t>(ds.sequence_length(i)));
  EXPECT_TRUE(ds.read(i, 0, static_cast<int64_t>(out.size()), out.data()).ok());
  return out;
}

TEST(IndexedDataset, RoundTripUint16AndInt32WithEmptyDocuments) {
  ScratchDir dir("idx-roundtrip");
  const std::vector<std::vector<int32_t>> docs = {{5, 6, 7}, {}, {65535}, {0, 1, 2, 3, 4, 5, 6, 7, 8}, {}};
  for (TokenDType dt : {TokenDType::kU16, TokenDType::kI32}) {
    const std::string prefix = dir.file(token_dtype_name(dt));
    write_documents(prefix, docs, dt);
    auto ds = IndexedDataset::open(prefix);
    ASSERT_TRUE(ds.ok()) << ds.status();
    EXPECT_EQ(ds->dtype(), dt);
    EXPECT_EQ(ds->num_sequences(), 5);
    EXPECT_EQ(ds->num_documents(), 5);
    EXPECT_EQ(ds->num_tokens(), 13);
    for (int64_t i = 0; i < 5; ++i) {
      EXPECT_EQ(read_seq(*ds, i), docs[i]) << "sequence " << i;
      EXPECT_EQ(ds->document_index(i + 1), i + 1);
    }
    // A slice in the middle, and an out-of-range request as a Status.
    std::vector<int32_t> mid(3);
    ASSERT_TRUE(ds->read(3, 4, 3, mid.data()).ok());
    EXPECT_EQ(mid, (std::vector<int32_t>{4, 5, 6}));
    EXPECT_EQ(ds->read(3, 8, 2, mid.data()).code(), absl::StatusCode::kOutOfRange);
    EXPECT_TRUE(ds->check_vocab(65536).ok());
    absl::Status v = ds->check_vocab(100);
    EXPECT_FALSE(v.ok());
    EXPECT_NE(v.message().find("65535"), std::string::npos) << v;
  }
}

TEST(IndexedDataset, EmptyDatasetAndZeroLengthSequences) {
  ScratchDir dir("idx-empty");
  {
    auto w = IndexedDatasetWriter::create(dir.file("none"), TokenDType::kU16);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w->finish().ok());
  }
  auto none = IndexedDataset::open(dir.file("none"));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->num_sequences(), 0);
  EXPECT_EQ(none->num_documents(), 0);
  EXPECT_EQ(none->bin_size(), 0u);

  write_documents(dir.file("zeros"), {{}, {}, {}});
  auto z = IndexedDataset::open(dir.file("zeros"));
  ASSERT_TRUE(z.ok()) << z.status();
  EXPECT_EQ(z->num_sequences(), 3);
  EXPECT_EQ(z->num_tokens(), 0);
}

TEST(IndexedDataset, TokenOutsideDtypeIsAnError) {
  ScratchDir dir("idx-range");
  auto w = IndexedDatasetWriter::create(dir.file("p"), TokenDType::kU16);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->add_document(std::vector<int32_t>{1, 65536}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(w->add_document(std::vector<int32_t>{-1}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(token_dtype_for_vocab(50257), TokenDType::kU16);
  EXPECT_EQ(token_dtype_for_vocab(65500), TokenDType::kI32);
}

TEST(IndexedDataset, UnfinishedWriterLeavesNothingUnderFinalNames) {
  ScratchDir dir("idx-partial");
  const std::string prefix = dir.file("p");
  write_documents(prefix, {{1, 2, 3}});
  const auto old_idx = read_bytes(prefix + ".idx");
  {
    auto w = IndexedDatasetWriter::create(prefix, TokenDType::kU16);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w->add_document(std::vector<int32_t>{9, 9, 9, 9}).ok());
    EXPECT_TRUE(std::filesystem::exists(prefix + ".bin.partial"));
    // destroyed without finish()
  }
  EXPECT_FALSE(std::filesystem::exists(prefix + ".bin.partial"));
  EXPECT_FALSE(std::filesystem::exists(prefix + ".idx.partial"));
  EXPECT_EQ(read_bytes(prefix + ".idx"), old_idx);
  auto ds = IndexedDataset::open(prefix);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(read_seq(*ds, 0), (std::vector<int32_t>{1, 2, 3}));
}

// The .idx Megatron's IndexedDatasetBuilder writes for (uint16):
//   add_document([5, 6, 7], lengths=[3])          -> sequence 0, document 0
//   end_document() with no new sequence            -> document 1 is empty
//   add_document([65535], lengths=[0, 1])          -> sequences 1 (empty) and 2, document 2
//   add_document([0, 1000], lengths=[2])           -> sequence 3, document 3
// sequence_lengths = [3, 0, 1, 2], pointers = cumsum * 2 = [0, 6, 6, 8],
// document_indices = [0, 1, 1, 3, 4].
std::vector<uint8_t> golden_idx() {
  std::vector<uint8_t> b = {'M', 'M', 'I', 'D', 'I', 'D', 'X', 0, 0};
  le(&b, 1, 8);  // version
  le(&b, 8, 1);  // dtype code: uint16
  le(&b, 4, 8);  // S
  le(&b, 5, 8);  // D1
  for (uint64_t len : {3, 0, 1, 2}) le(&b, len, 4);
  for (uint64_t ptr : {0, 6, 6, 8}) le(&b, ptr, 8);
  for (uint64_t d : {0, 1, 1, 3, 4}) le(&b, d, 8);
  EXPECT_EQ(b.size(), 34u + 12 * 4 + 8 * 5);
  return b;
}

std::vector<uint8_t> golden_bin() {
  std::vector<uint8_t> b;
  for (uint64_t t : {5, 6, 7, 65535, 0, 1000}) le(&b, t, 2);
  return b;
}

TEST(IndexedDataset, ReadsMegatronGoldenBytes) {
  ScratchDir dir("idx-golden");
  write_bytes(dir.file("g.idx"), golden_idx());
  write_bytes(dir.file("g.bin"), golden_bin());
  auto ds = IndexedDataset::open(dir.file("g"));
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->dtype(), TokenDType::kU16);
  EXPECT_EQ(ds->num_sequences(), 4);
  EXPECT_EQ(ds->num_documents(), 4);
  EXPECT_EQ(ds->sequence_lengths(), (std::vector<int32_t>{3, 0, 1, 2}));
  EXPECT_EQ(ds->sequence_pointer(3), 8);
  EXPECT_EQ(ds->document_index(2), 1);
  EXPECT_EQ(read_seq(*ds, 0), (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(read_seq(*ds, 1), (std::vector<int32_t>{}));
  EXPECT_EQ(read_seq(*ds, 2), (std::vector<int32_t>{65535}));
  EXPECT_EQ(read_seq(*ds, 3), (std::vector<int32_t>{0, 1000}));
}

TEST(IndexedDataset, WriterBytesEqualMegatronGolden) {
  ScratchDir dir("idx-golden-w");
  const std::string prefix = dir.file("w");
  auto w = IndexedDatasetWriter::create(prefix, TokenDType::kU16);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(w->add_document(std::vector<int32_t>{5, 6, 7}).ok());
  w->end_document();
  ASSERT_TRUE(w->add_sequence(std::vector<int32_t>{}).ok());
  ASSERT_TRUE(w->add_sequence(std::vector<int32_t>{65535}).ok());
  w->end_document();
  ASSERT_TRUE(w->add_document(std::vector<int32_t>{0, 1000}).ok());
  ASSERT_TRUE(w->finish().ok());
  EXPECT_EQ(read_bytes(prefix + ".idx"), golden_idx());
  EXPECT_EQ(read_bytes(prefix + ".bin"), golden_bin());
}

// Opens g.{idx,bin} in `dir` after `mutate` edits the golden .idx (and `bin` the .bin); expects
// a failure whose message names the file, "at byte <offset>" and `needle`.
void expect_corrupt(const std::string& what, const std::function<void(std::vector<uint8_t>*)>& mutate,
                    const std::string& file_suffix, uint64_t offset, const std::string& needle,
                    const std::function<void(std::vector<uint8_t>*)>& mutate_bin = nullptr) {
  SCOPED_TRACE(what);
  ScratchDir dir("idx-corrupt");
  auto idx = golden_idx();
  auto bin = golden_bin();
  if (mutate) mutate(&idx);
  if (mutate_bin) mutate_bin(&bin);
  write_bytes(dir.file("g.idx"), idx);
  write_bytes(dir.file("g.bin"), bin);
  auto ds = IndexedDataset::open(dir.file("g"));
  ASSERT_FALSE(ds.ok());
  const std::string msg(ds.status().message());
  EXPECT_NE(msg.find(dir.file("g" + file_suffix)), std::string::npos) << msg;
  EXPECT_NE(msg.find("at byte " + std::to_string(offset) + ":"), std::string::npos) << msg;
  EXPECT_NE(msg.find(needle), std::string::npos) << msg;
}

TEST(IndexedDataset, CorruptionGivesStatusNamingFileAndOffset) {
  expect_corrupt("flipped magic", [](auto* b) { (*b)[3] ^= 0xff; }, ".idx", 0, "not a Megatron .idx");
  expect_corrupt("TNTIDX", [](auto* b) { std::memcpy(b->data(), "TNTIDX\0\0", 8); }, ".idx", 0, "TNTIDX");
  expect_corrupt("version", [](auto* b) { (*b)[9] = 2; }, ".idx", 9, "found version 2, expected 1");
  expect_corrupt("dtype 6", [](auto* b) { (*b)[17] = 6; }, ".idx", 17, "found dtype code 6");
  expect_corrupt("dtype 7", [](auto* b) { (*b)[17] = 7; }, ".idx", 17, "found dtype code 7");
  expect_corrupt("dtype 9", [](auto* b) { (*b)[17] = 9; }, ".idx", 17, "found dtype code 9");
  expect_corrupt("S too large", [](auto* b) { (*b)[18] = 5; }, ".idx", 18, "S = 5");
  expect_corrupt("huge S", [](auto* b) { (*b)[25] = 0x7f; }, ".idx", 18,
                 "S = 9151314442816847876 sequences and D1 = 5 document-index entries, which need a file of "
                 "34 + 12*S + 8*D1 = 109815773313802174586 bytes; found 122 bytes");
  expect_corrupt("extra byte", [](auto* b) { b->push_back(0); }, ".idx", 18, "found 123 bytes");
  expect_corrupt("negative length", [](auto* b) { (*b)[34 + 4 + 3] = 0x80; }, ".idx", 38, "has length");
  expect_corrupt("pointer past .bin", [](auto* b) { (*b)[34 + 16 + 24] = 200; }, ".idx", 74, "points at bytes");
  expect_corrupt("document index ends early", [](auto* b) { (*b)[34 + 48 + 32] = 3; }, ".idx", 114, "ends at 3");
  expect_corrupt("document index decreasing", [](auto* b) { (*b)[34 + 48 + 16] = 0; }, ".idx", 98,
                 "non-decreasing");
  expect_corrupt("document index not starting at 0", [](auto* b) { (*b)[34 + 48] = 1; }, ".idx", 82,
                 "starts at 1");
  expect_corrupt("truncated .bin", nullptr, ".idx", 34 + 16 + 24, "truncated .bin",
                 [](auto* b) { b->pop_back(); });
  // Truncating the .idx anywhere is an error that says where the file ended or what it lacks.
  const size_t full = golden_idx().size();
  for (size_t cut : {size_t{0}, size_t{5}, size_t{9}, size_t{20}, size_t{33}}) {
    expect_corrupt("truncated header at " + std::to_string(cut), [cut](auto* b) { b->resize(cut); }, ".idx", cut,
                   "truncated .idx");
  }
  for (size_t cut : {size_t{34}, size_t{50}, full - 8, full - 1}) {
    expect_corrupt("truncated body at " + std::to_string(cut), [cut](auto* b) { b->resize(cut); }, ".idx", 18,
                   "found " + std::to_string(cut) + " bytes");
  }
}

// Issue #15 item 4: an .idx that contradicts itself or its .bin is refused at open, naming the
// check, the sequence and the numbers. Golden pointers are [0, 6, 6, 8] (uint16, lengths
// [3, 0, 1, 2]); pointer i lies at byte 50 + 8i, the dtype code at byte 17.
TEST(IndexedDataset, SelfContradictingIndexRefused) {
  // A dtype code that disagrees with the data: int32 makes pointer 6 misaligned; uint8 makes
  // sequence 1 start past where sequence 0 (3 bytes) ends.
  expect_corrupt("dtype int32 on uint16 data", [](auto* b) { (*b)[17] = 4; }, ".idx", 58,
                 "sequence 1 points at byte 6 of " );
  expect_corrupt("dtype int32 on uint16 data (why)", [](auto* b) { (*b)[17] = 4; }, ".idx", 58,
                 "not a multiple of the token size 4 (dtype code 4 = int32, 4 bytes per token");
  expect_corrupt("dtype uint8 on uint16 data", [](auto* b) { (*b)[17] = 1; }, ".idx", 58,
                 "sequence 1 starts at byte 6 of");
  expect_corrupt("dtype uint8 on uint16 data (where)", [](auto* b) { (*b)[17] = 1; }, ".idx", 58,
                 "expected 3 where sequence 0 ends: pointers must be contiguous (dtype code 1 = uint8");
  // A pointer moved by one byte: misaligned for uint16.
  expect_corrupt("pointer + 1", [](auto* b) { (*b)[50 + 16] = 7; }, ".idx", 66,
                 "sequence 2 points at byte 7 of");
  expect_corrupt("pointer + 1 (why)", [](auto* b) { (*b)[50 + 16] = 7; }, ".idx", 66,
                 "not a multiple of the token size 2");
  // Pointers inside the .bin and aligned, but not back to back.
  expect_corrupt("pointer + 1 token", [](auto* b) { (*b)[50 + 16] = 8; }, ".idx", 66,
                 "sequence 2 starts at byte 8 of");
  expect_corrupt("pointer + 1 token (expected)", [](auto* b) { (*b)[50 + 16] = 8; }, ".idx", 66,
                 "expected 6 where sequence 1 ends");
  expect_corrupt("first pointer not 0", [](auto* b) { (*b)[50] = 2; }, ".idx", 50,
                 "sequence 0 starts at byte 2 of");
  expect_corrupt("first pointer not 0 (expected)", [](auto* b) { (*b)[50] = 2; }, ".idx", 50,
                 "expected 0 (the first sequence starts the .bin)");
  // The .bin longer than its sequences.
  expect_corrupt("extra .bin bytes", nullptr, ".bin", 12,
                 "the 4 sequences of", [](auto* b) { b->push_back(0), b->push_back(0); });
  expect_corrupt("extra .bin bytes (numbers)", nullptr, ".bin", 12,
                 "end at byte 12 (6 tokens, dtype code 8 = uint16, 2 bytes per token), but the file has 14 bytes (2 more)",
                 [](auto* b) { b->push_back(0), b->push_back(0); });
}

// One sequence of int32 tokens labelled uint16: lengths and pointers agree with each other, and
// only the .bin's size shows the dtype code is wrong.
TEST(IndexedDataset, DtypeDisagreeingWithBinSizeRefused) {
  ScratchDir dir("idx-dtype");
  write_documents(dir.file("d"), {{1, 2, 3}}, TokenDType::kI32);
  auto idx = read_bytes(dir.file("d.idx"));
  idx[17] = 8;
  write_bytes(dir.file("d.idx"), idx);
  auto ds = IndexedDataset::open(dir.file("d"));
  ASSERT_FALSE(ds.ok()) << "int32 data read as uint16";
  EXPECT_NE(ds.status().message().find(dir.file("d.bin") + ": at byte 6: the 1 sequences of " + dir.file("d.idx") +
                                       " end at byte 6 (3 tokens, dtype code 8 = uint16, 2 bytes per token), but "
                                       "the file has 12 bytes (6 more)"),
            std::string::npos)
      << ds.status();
}

TEST(IndexedDataset, MissingFilesAreNotFound) {
  ScratchDir dir("idx-missing");
  auto ds = IndexedDataset::open(dir.file("nothing"));
  ASSERT_FALSE(ds.ok());
  EXPECT_EQ(ds.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(ds.status().message().find("nothing.idx"), std::string::npos);
}

TEST(IndexedDataset, Int64TokensOutsideInt32AreAnError) {
  ScratchDir dir("idx-i64");
  std::vector<uint8_t> idx = {'M', 'M', 'I', 'D', 'I', 'D', 'X', 0, 0};
  le(&idx, 1, 8), le(&idx, 5, 1), le(&idx, 1, 8), le(&idx, 2, 8);
  le(&idx, 2, 4), le(&idx, 0, 8), le(&idx, 0, 8), le(&idx, 1, 8);
  std::vector<uint8_t> bin;
  le(&bin, 7, 8), le(&bin, uint64_t{1} << 40, 8);
  write_bytes(dir.file("w.idx"), idx);
  write_bytes(dir.file("w.bin"), bin);
  auto ds = IndexedDataset::open(dir.file("w"));
  ASSERT_TRUE(ds.ok()) << ds.status();
  std::vector<int32_t> out(2);
  ASSERT_TRUE(ds->read(0, 0, 1, out.data()).ok());
  EXPECT_EQ(out[0], 7);
  absl::Status s = ds->read(0, 0, 2, out.data());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("w.bin: at byte 8:"), std::string::npos) << s;
}

TEST(LlmcShard, ReadsGpt2AndLlama3KindsAndChecksSize) {
  ScratchDir dir("llmc");
  auto shard = [](int32_t magic, int32_t version, int32_t n, int itemsize, const std::vector<uint64_t>& toks) {
    std::vector<uint8_t> b;
    le(&b, static_cast<uint32_t>(magic), 4), le(&b, static_cast<uint32_t>(version), 4), le(&b, static_cast<uint32_t>(n), 4);
    b.resize(1024, 0);
    for (uint64_t t : toks) le(&b, t, itemsize);
    return b;
  };
  write_bytes(dir.file("gpt2.bin"), shard(20240520, 1, 3, 2, {50256, 15496, 11}));
  auto g = LlmcShard::open(dir.file("gpt2.bin"));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->kind(), LlmcShard::Kind::kGpt2);
  std::vector<int32_t> out(3);
  ASSERT_TRUE(g->read(0, 3, out.data()).ok());
  EXPECT_EQ(out, (std::vector<int32_t>{50256, 15496, 11}));

  write_bytes(dir.file("llama.bin"), shard(20240801, 7, 2, 4, {128000, 9906}));
  auto l = LlmcShard::open(dir.file("llama.bin"));
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->kind(), LlmcShard::Kind::kLlama3);
  ASSERT_TRUE(l->read(0, 2, out.data()).ok());
  EXPECT_EQ(out[1], 9906);

  write_bytes(dir.file("short.bin"), shard(20240520, 1, 4, 2, {1, 2, 3}));
  auto s = LlmcShard::open(dir.file("short.bin"));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("at byte 8: header says 4 tokens"), std::string::npos) << s.status();
  write_bytes(dir.file("ver.bin"), shard(20240801, 1, 0, 4, {}));
  auto v = LlmcShard::open(dir.file("ver.bin"));
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("at byte 4: found version 1, expected 7"), std::string::npos) << v.status();
  write_bytes(dir.file("tiny.bin"), std::vector<uint8_t>(100, 0));
  EXPECT_FALSE(LlmcShard::open(dir.file("tiny.bin")).ok());
}

}  // namespace
}  // namespace cmoe::data
