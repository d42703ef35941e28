// safetensors_test.cpp — the safetensors writer and reader: exact bytes of a known file, round
// trips of every dtype, and one rejection per validation rule of the reader.
#include "checkpoint/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace cmoe {
namespace {

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("cmoe_safetensors_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // A file from a header text and a data buffer, exactly as given (no padding added).
  std::string craft(const std::string& header, const std::string& data, int64_t len_override = -1) {
    std::string p = path("crafted.safetensors");
    std::ofstream out(p, std::ios::binary);
    uint64_t n = len_override >= 0 ? static_cast<uint64_t>(len_override) : header.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << header << data;
    return p;
  }
  std::string read_error(const std::string& p) {
    auto r = safetensors_read(p);
    EXPECT_FALSE(r.ok()) << "accepted an invalid file";
    return r.ok() ? "" : std::string(r.status().message());
  }

  std::filesystem::path dir_;
};

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST_F(SafetensorsTest, WritesTheReferenceLayout) {
  Tensor t = Tensor::from_floats({2}, std::vector<float>{1.0f, -2.0f});
  ASSERT_TRUE(safetensors_write(path("a.safetensors"), {{"a", t}}).ok());
  // What the reference Python library writes for {"a": torch.tensor([1., -2.])}: the header
  // padded with spaces to a multiple of 8, then the little-endian floats.
  std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string want(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(want.data(), &n, 8);
  want += header;
  const float vals[2] = {1.0f, -2.0f};
  want.append(reinterpret_cast<const char*>(vals), 8);
  EXPECT_EQ(slurp(path("a.safetensors")), want);
}

TEST_F(SafetensorsTest, RoundTripsEveryDtypeShapeAndMetadata) {
  std::vector<NamedTensor> in;
  in.push_back({"model.f32", Tensor::from_floats({2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6})});
  in.push_back({"model.bf16", Tensor::from_floats({3}, std::vector<float>{0.5f, -1.25f, 3.0f}).to_dtype(DType::kBF16)});
  in.push_back({"i32", Tensor::from_ints({2, 2}, std::vector<int32_t>{-1, 0, 7, 1 << 30})});
  Tensor i64 = Tensor::empty({2}, DType::kI64);
  i64.data<int64_t>()[0] = -5;
  i64.data<int64_t>()[1] = int64_t{1} << 40;
  in.push_back({"i64", i64});
  in.push_back({"scalar", Tensor::full({}, 42.0f)});
  in.push_back({"empty", Tensor::empty({0, 4}, DType::kF32)});
  in.push_back({"quote\"and\\slash\n", Tensor::full({1}, 1.0f)});
  std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "line\nbreak \"quoted\""}};
  ASSERT_TRUE(safetensors_write(path("r.safetensors"), in, meta).ok());

  auto r = safetensors_read(path("r.safetensors"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->metadata, meta);
  ASSERT_EQ(r->tensors.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    SCOPED_TRACE(in[i].name);
    EXPECT_EQ(r->tensors[i].name, in[i].name);  // data-offset order = write order
    EXPECT_EQ(r->tensors[i].tensor.dtype(), in[i].tensor.dtype());
    EXPECT_EQ(r->tensors[i].tensor.shape(), in[i].tensor.shape());
    EXPECT_EQ(std::memcmp(r->tensors[i].tensor.raw_data(), in[i].tensor.raw_data(), in[i].tensor.nbytes()), 0);
  }
}

TEST_F(SafetensorsTest, ReadsEscapesAndUnicodeInNames) {
  const std::string h = R"({"caf\u00e9\ud83d\ude00":{"dtype":"I32","shape":[],"data_offsets":[0,4]}})";
  auto r = safetensors_read(craft(h, std::string(4, '\0')));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tensors[0].name, "caf\xc3\xa9\xf0\x9f\x98\x80");
}

TEST_F(SafetensorsTest, RejectsEveryMalformedHeader) {
  const std::string ok = R"("x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string data(8, '\0');
  struct Case {
    std::string header, data, want;
  };
  const std::vector<Case> cases = {
      {"{" + ok, data, "expected ',' or '}'"},
      {"[1]", "", "not a JSON object"},
      {"{" + ok + "," + ok + "}", data, "duplicate key \"x\""},
      {R"({"x":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", std::string(4, '\0'), "not supported"},
      {R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", std::string(4, '\0'), "needs 8"},
      {R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data, "non-negative"},
      {R"({"x":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", data, "non-negative integers"},
      {R"({"x":{"dtype":"F32","shape":[2]}})", data, "needs dtype, shape and data_offsets"},
      {R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data, "0 <= begin <= end"},
      {R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}})", data, "unknown field"},
      {R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data, "a gap before it"},
      {R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       data, "overlaps"},
      {"{" + ok + "}", data + "junk", "trailing bytes"},
      {"{" + ok + "}", std::string(4, '\0'), "truncated"},
      {R"({"__metadata__":{"a":1}})", "", "not a string"},
      {R"({"x\q":{}})", "", "invalid escape"},
      {"{" + ok + "} x", data, "expected end of input"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.header);
    const std::string msg = read_error(craft(c.header, c.data));
    EXPECT_NE(msg.find(c.want), std::string::npos) << msg;
    EXPECT_NE(msg.find("crafted.safetensors"), std::string::npos) << "the message names the file: " << msg;
  }
}

TEST_F(SafetensorsTest, RejectsBadHeaderLengths) {
  EXPECT_NE(read_error(craft("{}", "", int64_t{1} << 40)).find("exceeds the limit"), std::string::npos);
  EXPECT_NE(read_error(craft("{}", "", 64)).find("runs past the end"), std::string::npos);
  std::ofstream(path("short.safetensors")) << "abc";
  EXPECT_NE(read_error(path("short.safetensors")).find("too short"), std::string::npos);
  EXPECT_EQ(safetensors_read(path("missing.safetensors")).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace cmoe
