// data_text_test.cpp — Pile records from JSON lines (escapes, meta, errors naming file, line
// and column) and line reading from plain and zstd files (concatenated frames, truncation).
#include <zstd.h>

#include <fstream>

#include "data/jsonl_reader.h"
#include "data/line_reader.h"
#include "tests/data_test_util.h"

namespace cmoe::data {
namespace {

using testing::ScratchDir;

TEST(JsonlRecord, ExtractsTextAndPileSetName) {
  auto r = jsonl_parse_record(
      R"({"text": "a\"b\\c\n\u00e9\ud83d\ude00/\/", "meta": {"x": [1, -2.5e3, {"y": null}], "pile_set_name": "Pile-CC"}, "z": true})",
      "f.jsonl", 3);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->text, "a\"b\\c\n\xc3\xa9\xf0\x9f\x98\x80//");
  EXPECT_EQ(r->pile_set_name, "Pile-CC");
  auto no_meta = jsonl_parse_record(R"(  {"text":""}  )", "f.jsonl", 1);
  ASSERT_TRUE(no_meta.ok()) << no_meta.status();
  EXPECT_EQ(no_meta->text, "");
  EXPECT_EQ(no_meta->pile_set_name, "");
  // A lone surrogate becomes U+FFFD instead of invalid UTF-8.
  auto lone = jsonl_parse_record(R"({"text": "\ud800x"})", "f", 1);
  ASSERT_TRUE(lone.ok());
  EXPECT_EQ(lone->text, "\xef\xbf\xbdx");
}

TEST(JsonlRecord, MalformedLinesNameFileLineAndColumn) {
  struct Case {
    const char* line;
    const char* needle;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"text": "abc)", "column 10): unterminated string"},
           {R"({"text": 5})", "expected a string value for \"text\""},
           {R"({"meta": {}})", "no \"text\""},
           {R"({"text": "a" "b"})", "column 14"},
           {R"({"text": "a\q"})", "column 13): invalid escape"},
           {R"({"text": "a", "n": 01})", "leading zeros"},
           {R"({"text": "a"} x)", "column 15): expected end of input"},
           {"{\"text\": \"a\tb\"}", "control characters must be escaped"},
           {R"([1, 2])", "expected a JSON object"},
           {"", "column 1): expected a value, found end of input"},
       }) {
    auto r = jsonl_parse_record(c.line, "f.jsonl", 7);
    ASSERT_FALSE(r.ok()) << c.line;
    EXPECT_NE(r.status().message().find(c.needle), std::string::npos) << c.line << " -> " << r.status();
    EXPECT_NE(r.status().message().find("f.jsonl:7"), std::string::npos) << r.status();
  }
  std::string deep = R"({"text": "a", "x": )" + std::string(100, '[') + std::string(100, ']') + "}";
  EXPECT_FALSE(jsonl_parse_record(deep, "f", 1).ok());
}

std::vector<std::string> read_all(const std::string& path, absl::Status* err = nullptr) {
  auto r = LineReader::open(path);
  EXPECT_TRUE(r.ok()) << r.status();
  std::vector<std::string> lines;
  std::string line;
  for (;;) {
    auto more = (*r)->next(&line);
    if (!more.ok()) {
      if (err) *err = more.status();
      break;
    }
    if (!*more) break;
    lines.push_back(line);
  }
  return lines;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string zstd_frame(const std::string& s) {
  std::string out(ZSTD_compressBound(s.size()), '\0');
  out.resize(ZSTD_compress(out.data(), out.size(), s.data(), s.size(), 3));
  return out;
}

TEST(LineReader, PlainAndZstdWithConcatenatedFrames) {
  ScratchDir dir("lines");
  std::string big;
  for (int i = 0; i < 50000; ++i) big += "line " + std::to_string(i) + "\n";  // > one zstd block
  write_file(dir.file("a.txt"), "one\n\ntwo\nlast-without-newline");
  EXPECT_EQ(read_all(dir.file("a.txt")), (std::vector<std::string>{"one", "", "two", "last-without-newline"}));
  write_file(dir.file("b.jsonl.zst"), zstd_frame(big) + zstd_frame("x\ny\n"));
  auto lines = read_all(dir.file("b.jsonl.zst"));
  ASSERT_EQ(lines.size(), 50002u);
  EXPECT_EQ(lines[49999], "line 49999");
  EXPECT_EQ(lines[50001], "y");
  // Truncated stream: an error, never silently short data.
  const std::string frame = zstd_frame(big);
  write_file(dir.file("c.zst"), frame.substr(0, frame.size() / 2));
  absl::Status err;
  read_all(dir.file("c.zst"), &err);
  EXPECT_FALSE(err.ok());
  EXPECT_NE(err.message().find("c.zst"), std::string::npos) << err;
  write_file(dir.file("d.zst"), "this is not zstd at all");
  absl::Status err2;
  read_all(dir.file("d.zst"), &err2);
  EXPECT_FALSE(err2.ok());
  EXPECT_FALSE(LineReader::open(dir.file("missing.txt")).ok());
}

}  // namespace
}  // namespace cmoe::data
