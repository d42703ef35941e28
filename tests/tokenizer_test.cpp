// tokenizer_test.cpp — the byte-level BPE tokenizer, its JSON parser and its trainer.
//
// Exactness against GPT-2: tests/data/gpt2_corpus_ids.json holds the ids two independent
// reference encoders (npm gpt-3-encoder and gpt-tokenizer's r50k_base) give for
// tests/data/tokenizer_corpus.txt, and tests/data/gpt2_subset.tokenizer.json is GPT-2's tokenizer
// reduced to what those ids need (scripts/tokenizer/regen_gpt2_fixture.sh regenerates both).
// Everything else is checked against hand-derived splits or plain reference implementations
// written in this file (GPT-2's merge loop, a recount-everything BPE trainer).
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "core/json.h"
#include "data/tokenizer.h"
#include "data/tokenizer_pretokenize.h"
#include "data/tokenizer_train.h"
#include "data/unicode.h"
#include "gtest/gtest.h"

namespace cmoe {
namespace {

std::string msg(const absl::Status& s) { return std::string(s.message()); }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

std::string data_path(const char* name) { return std::string(CMOE_SOURCE_DIR) + "/tests/data/" + name; }

std::string u8(char32_t cp) {
  std::string s;
  unicode::append_utf8(&s, cp);
  return s;
}

// Byte-level spelling of raw bytes.
std::string bl(std::string_view bytes) {
  std::string s;
  for (unsigned char c : bytes) s += u8(unicode::byte_to_unicode()[c]);
  return s;
}

std::vector<std::string> split(std::string_view s) {
  std::vector<std::string> out;
  pretokenize_gpt2(s, [&](std::string_view w) { out.emplace_back(w); });
  return out;
}

// A tokenizer over all 256 bytes plus the given merges (raw-byte strings), ids: bytes 0..255 in
// byte order, merged tokens 256.. in merge order.
Tokenizer tiny(const std::vector<std::pair<std::string, std::string>>& merges, std::vector<AddedToken> added = {},
               Normalizer norm = Normalizer::kNone) {
  TokenizerSpec spec;
  for (int b = 0; b < 256; ++b) spec.vocab.emplace_back(bl(std::string(1, static_cast<char>(b))), b);
  std::set<std::string> have;
  int32_t next = 256;
  for (const auto& [a, b] : merges) {
    spec.merges.emplace_back(bl(a), bl(b));
    if (have.insert(a + b).second) spec.vocab.emplace_back(bl(a + b), next++);
  }
  for (AddedToken& t : added) {
    if (t.id < 0) t.id = next++;
  }
  spec.added_tokens = std::move(added);
  spec.normalizer = norm;
  auto tok = Tokenizer::create(std::move(spec));
  EXPECT_TRUE(tok.ok()) << tok.status();
  return *std::move(tok);
}

std::string random_bytes(std::mt19937& rng, size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xFF);
  return s;
}

std::string random_text(std::mt19937& rng, size_t n_chars) {
  static const char32_t kPool[] = {'a', 'b', 'e', 't', 'h', ' ', ' ', ' ', '\n', '\t', '\'', 's', 'l', 'd', '1',
                                   '9', '.', ',', '!', 0xE9, 0x301, 0x3B1, 0x416, 0x4E2D, 0x3000, 0xA0, 0x1F600,
                                   0x200D, 0x2028, 0x85, 0x10348, 0xFFFD, 0x7F, 0x1};
  std::string s;
  for (size_t k = 0; k < n_chars; ++k) s += u8(kPool[rng() % (sizeof(kPool) / sizeof(kPool[0]))]);
  return s;
}

// ---- JSON ----------------------------------------------------------------------------------------

TEST(Json, ParsesValues) {
  auto v = json::parse(R"( {"a": [1, -2, 3.5, 1e3, true, false, null], "s": "x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00",
                          "o": {}, "e": []} )");
  ASSERT_TRUE(v.ok()) << v.status();
  const auto& a = v->find("a")->as_array();
  ASSERT_EQ(a.size(), 7u);
  EXPECT_TRUE(a[0].is_int());
  EXPECT_EQ(a[1].as_int(), -2);
  EXPECT_FALSE(a[2].is_int());
  EXPECT_DOUBLE_EQ(a[2].as_double(), 3.5);
  EXPECT_DOUBLE_EQ(a[3].as_double(), 1000.0);
  EXPECT_FALSE(a[3].is_int());
  EXPECT_TRUE(a[4].as_bool());
  EXPECT_TRUE(a[6].is_null());
  EXPECT_EQ(v->find("s")->as_string(), "x\"\\/\b\f\n\r\t\xC3\xA9\xF0\x9F\x98\x80");
  EXPECT_TRUE(v->find("o")->as_object().empty());
  EXPECT_EQ(v->find("missing"), nullptr);
  EXPECT_EQ(a[1].offset(), 11u);  // the '-' of -2
}

TEST(Json, SerializeRoundTrips) {
  std::string text = R"({"k":["a b",["x","y"],{"n":-12,"d":0.25,"u":"\u0001é\"\\"}],"z":null,"t":true})";
  auto v = json::parse(text);
  ASSERT_TRUE(v.ok());
  for (int indent : {-1, 0, 2}) {
    std::string s = json::serialize(*v, indent);
    auto w = json::parse(s);
    ASSERT_TRUE(w.ok()) << s;
    EXPECT_EQ(json::serialize(*w, -1), json::serialize(*v, -1));
  }
  EXPECT_EQ(json::serialize(*v, -1), text);
  std::string q;
  json::append_quoted(&q, std::string("a\xFF") + "b");
  EXPECT_EQ(q, "\"a\\ufffdb\"");  // invalid UTF-8 never reaches JSON text
}

TEST(Json, ErrorsNameOffsetAndExpectation) {
  struct Case {
    const char* text;
    const char* needle;
  };
  const Case cases[] = {
      {"{\"a\": [1, 2", "offset 11 (line 1, column 12): expected ',' or ']'"},
      {"{\"a\": 1,}", "expected a string key"},
      {"[01]", "leading zeros"},
      {"{\"a\" 1}", "expected ':'"},
      {"\"abc", "unterminated string"},
      {"\"a\x01\"", "control characters"},
      {"\"\\ud800\"", "lone high surrogate"},
      {"\"\\udc00\"", "lone low surrogate"},
      {"\"\\x\"", "invalid escape"},
      {"\"\xC3\x28\"", "invalid UTF-8"},
      {"{\"a\":1,\"a\":2}", "duplicate key \"a\""},
      {"[1] [2]", "expected end of input"},
      {"", "expected a value"},
      {"[1.]", "expected a digit after '.'"},
      {"tru", "expected 'true'"},
      {"[\n\n  x]", "line 3, column 3"},
  };
  for (const Case& c : cases) {
    auto v = json::parse(c.text);
    ASSERT_FALSE(v.ok()) << c.text;
    EXPECT_NE(msg(v.status()).find(c.needle), std::string::npos) << c.text << " -> " << msg(v.status());
  }
  std::string deep(1000, '[');
  auto v = json::parse(deep);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(msg(v.status()).find("nesting deeper than 256"), std::string::npos);
  json::ParseOptions lenient;
  lenient.replace_lone_surrogates = true;
  auto r = json::parse("\"a\\ud800b\"", lenient);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->as_string(), "a\xEF\xBF\xBD" "b");
}

// ---- Unicode and the byte map ---------------------------------------------------------------------

TEST(Unicode, ByteMapMatchesGpt2) {
  const auto& m = unicode::byte_to_unicode();
  std::set<char32_t> seen(m.begin(), m.end());
  EXPECT_EQ(seen.size(), 256u);
  EXPECT_EQ(m[' '], 0x120u);
  EXPECT_EQ(m['\n'], 0x10Au);
  EXPECT_EQ(m[0], 0x100u);
  EXPECT_EQ(m['!'], static_cast<char32_t>('!'));
  EXPECT_EQ(m['~'], static_cast<char32_t>('~'));
  EXPECT_EQ(m[127], 0x121u);
  EXPECT_EQ(m[0xA0], 0x142u);
  EXPECT_EQ(m[0xAD], 0x143u);
  EXPECT_EQ(m[0xA1], 0xA1u);
  EXPECT_EQ(m[0xFF], 0xFFu);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(unicode::unicode_to_byte(m[b]), b);
  EXPECT_EQ(unicode::unicode_to_byte(' '), -1);
  EXPECT_EQ(unicode::unicode_to_byte(0x144), -1);
}

TEST(Unicode, DecodeRejectsIllFormedBytesOneAtATime) {
  const std::string bad = "\x80"               // stray continuation
                          "\xC0\xAF"           // overlong
                          "\xED\xA0\x80"       // surrogate
                          "\xF4\x90\x80\x80"   // > U+10FFFF
                          "\xE2\x82";          // truncated at the end
  EXPECT_EQ(unicode::first_invalid_utf8(bad), 0u);
  EXPECT_EQ(unicode::sanitize_utf8(bad).size(), bad.size() * 3);  // one U+FFFD per byte
  EXPECT_TRUE(unicode::is_valid_utf8("a\xC3\xA9\xF0\x9F\x98\x80"));
  EXPECT_EQ(unicode::nfc("cafe\xCC\x81"), "caf\xC3\xA9");
  EXPECT_EQ(unicode::nfc("e\xCC\x81\xFF" "e\xCC\x81"), "\xC3\xA9\xFF\xC3\xA9");  // bad byte kept
  EXPECT_EQ(unicode::nfc("\xE2\x84\xAB"), "\xC3\x85");                        // Angstrom sign -> Å
}

// ---- pre-tokenization --------------------------------------------------------------------------

TEST(Pretokenize, TrickyStrings) {
  using V = std::vector<std::string>;
  EXPECT_EQ(split("Hello world"), (V{"Hello", " world"}));
  EXPECT_EQ(split("it's I'll we've they're I'm he'd don't"),
            (V{"it", "'s", " I", "'ll", " we", "'ve", " they", "'re", " I", "'m", " he", "'d", " don", "'t"}));
  EXPECT_EQ(split("IT'S"), (V{"IT", "'", "S"}));  // contractions are case-sensitive
  EXPECT_EQ(split("'''s"), (V{"'''", "s"}));
  EXPECT_EQ(split(" 's"), (V{" '", "s"}));
  EXPECT_EQ(split("a  b"), (V{"a", " ", " b"}));
  EXPECT_EQ(split("a   \n\nb"), (V{"a", "   \n", "\n", "b"}));
  EXPECT_EQ(split("x   "), (V{"x", "   "}));
  EXPECT_EQ(split("\tword"), (V{"\t", "word"}));
  EXPECT_EQ(split("\n"), (V{"\n"}));
  EXPECT_EQ(split("123abc 456 7.5"), (V{"123", "abc", " 456", " 7", ".", "5"}));
  EXPECT_EQ(split("!!! ok?!"), (V{"!!!", " ok", "?!"}));
  EXPECT_EQ(split("caf\xC3\xA9"), (V{"caf\xC3\xA9"}));
  EXPECT_EQ(split("cafe\xCC\x81"), (V{"cafe", "\xCC\x81"}));          // a combining mark is not \p{L}
  EXPECT_EQ(split("a\xC2\xA0" "b"), (V{"a", "\xC2\xA0", "b"}));       // NBSP is \s
  EXPECT_EQ(split("x\xE3\x80\x80y"), (V{"x", "\xE3\x80\x80", "y"}));  // ideographic space
  EXPECT_EQ(split("\xC2\xB2\xE2\x85\xA7" "9"), (V{"\xC2\xB2\xE2\x85\xA7" "9"}));  // No, Nl, Nd are \p{N}
  EXPECT_EQ(split(" \xF0\x9F\x98\x80\xF0\x9F\x98\x80!"), (V{" \xF0\x9F\x98\x80\xF0\x9F\x98\x80!"}));
  EXPECT_EQ(split("a\xFF\xFE" "b"), (V{"a", "\xFF\xFE", "b"}));  // bad bytes are [^\s\p{L}\p{N}]
  EXPECT_EQ(split(" \xFF"), (V{" \xFF"}));
  EXPECT_EQ(split(""), (V{}));
}

TEST(Pretokenize, PiecesTileTheInput) {
  std::mt19937 rng(7);
  for (int k = 0; k < 200; ++k) {
    std::string s = k % 2 ? random_text(rng, 40) : random_bytes(rng, 40);
    std::string joined;
    for (const std::string& p : split(s)) {
      EXPECT_FALSE(p.empty());
      joined += p;
    }
    EXPECT_EQ(joined, s);
  }
}

// ---- BPE -------------------------------------------------------------------------------------------

TEST(Bpe, MergesApplyByRank) {
  {
    Tokenizer t = tiny({{"a", "b"}, {"b", "c"}, {"ab", "c"}});  // ab=256 bc=257 abc=258
    EXPECT_EQ(t.encode("abc"), (std::vector<int32_t>{258}));
    EXPECT_EQ(t.encode("bc"), (std::vector<int32_t>{257}));
  }
  {
    Tokenizer t = tiny({{"b", "c"}, {"a", "b"}, {"ab", "c"}});  // bc=256 ab=257 abc=258
    // (b,c) outranks (a,b): a + bc, and (a,bc) is not a merge.
    EXPECT_EQ(t.encode("abc"), (std::vector<int32_t>{'a', 256}));
  }
  {
    Tokenizer t = tiny({{"a", "a"}});  // aa=256; equal ranks merge left to right
    EXPECT_EQ(t.encode("aaa"), (std::vector<int32_t>{256, 'a'}));
    EXPECT_EQ(t.encode("aaaa"), (std::vector<int32_t>{256, 256}));
  }
}

// GPT-2's encoder.py loop: find the lowest-ranked pair, merge all its occurrences left to right.
std::vector<std::string> gpt2_bpe(const std::vector<std::string>& symbols,
                                  const std::map<std::pair<std::string, std::string>, size_t>& ranks) {
  std::vector<std::string> word = symbols;
  while (word.size() > 1) {
    size_t best = SIZE_MAX;
    std::pair<std::string, std::string> bigram;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      auto it = ranks.find({word[i], word[i + 1]});
      if (it != ranks.end() && it->second < best) best = it->second, bigram = it->first;
    }
    if (best == SIZE_MAX) break;
    std::vector<std::string> next;
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == bigram.first && word[i + 1] == bigram.second) {
        next.push_back(bigram.first + bigram.second);
        i += 2;
      } else {
        next.push_back(word[i++]);
      }
    }
    word = next;
  }
  return word;
}

TEST(Bpe, MatchesGpt2MergeLoopOnTrainedMerges) {
  std::mt19937 rng(3);
  std::string corpus;
  for (int k = 0; k < 300; ++k) corpus += random_text(rng, 30) + " the then there these theses\n";
  TokenizerTrainOptions opts;
  opts.vocab_size = 1 + 256 + 300;
  auto tok = tokenizer_train({corpus}, opts);
  ASSERT_TRUE(tok.ok()) << tok.status();
  std::map<std::pair<std::string, std::string>, size_t> ranks;
  for (size_t r = 0; r < tok->spec().merges.size(); ++r) ranks.emplace(tok->spec().merges[r], r);
  for (int k = 0; k < 300; ++k) {
    std::string text = random_text(rng, 25);
    std::vector<int32_t> expected;
    for (const std::string& w : split(text)) {
      std::vector<std::string> symbols;
      for (unsigned char c : w) symbols.push_back(u8(unicode::byte_to_unicode()[c]));
      for (const std::string& piece : gpt2_bpe(symbols, ranks)) expected.push_back(*tok->token_to_id(piece));
    }
    EXPECT_EQ(tok->encode(text), expected) << text;
  }
}

// ---- GPT-2 exactness and round trips -----------------------------------------------------------------

TEST(Gpt2, MatchesReferenceEncoders) {
  auto tok = Tokenizer::load(data_path("gpt2_subset.tokenizer.json"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  std::string corpus = read_file(data_path("tokenizer_corpus.txt"));
  auto ids_json = json::parse(read_file(data_path("gpt2_corpus_ids.json")));
  ASSERT_TRUE(ids_json.ok()) << ids_json.status();
  std::vector<int32_t> expected;
  for (const json::Value& v : ids_json->as_array()) expected.push_back(static_cast<int32_t>(v.as_int()));
  ASSERT_GT(expected.size(), 500u);
  std::vector<int32_t> got = tok->encode(corpus);
  ASSERT_EQ(got.size(), expected.size());
  for (size_t k = 0; k < got.size(); ++k) ASSERT_EQ(got[k], expected[k]) << "first difference at token " << k;
  EXPECT_EQ(*tok->decode(got), corpus);
  // Hugging Face's added-token handling: <|endoftext|> in text is one id (50256).
  EXPECT_EQ(tok->encode("<|endoftext|>"), (std::vector<int32_t>{50256}));
  EXPECT_EQ(tok->encode("The<|endoftext|>The"), (std::vector<int32_t>{464, 50256, 464}));
  EXPECT_EQ(tok->eot_id(), 50256);
  EXPECT_TRUE(tok->is_special(50256));
}

TEST(Gpt2, RoundTripsTextAndBytes) {
  auto tok = Tokenizer::load(data_path("gpt2_subset.tokenizer.json"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  std::mt19937 rng(11);
  for (int k = 0; k < 200; ++k) {
    std::string text = random_text(rng, 1 + rng() % 60);
    EXPECT_EQ(*tok->decode(tok->encode(text)), text);
    std::string bytes = random_bytes(rng, 1 + rng() % 60);
    EXPECT_EQ(*tok->decode_bytes(tok->encode(bytes)), bytes);
    EXPECT_TRUE(unicode::is_valid_utf8(*tok->decode(tok->encode(bytes))));
  }
  std::string bad = "ok\xFF\xC3";
  EXPECT_EQ(*tok->decode(tok->encode(bad)), "ok\xEF\xBF\xBD\xEF\xBF\xBD");
  std::vector<int32_t> out_of_range = {464, 60000};
  auto d = tok->decode(out_of_range);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(msg(d.status()).find("token id 60000 at position 1"), std::string::npos) << msg(d.status());
  std::vector<int32_t> in_hole = {464, 50000};  // a GPT-2 id the subset does not keep
  EXPECT_FALSE(tok->decode(in_hole).ok());
}

// ---- added tokens and normalization ---------------------------------------------------------------

AddedToken added(std::string content, bool normalized = false, bool special = true) {
  AddedToken a;
  a.id = -1;
  a.content = std::move(content);
  a.normalized = normalized;
  a.special = special;
  return a;
}

TEST(AddedTokens, LeftmostLongestBeforeBpe) {
  Tokenizer t = tiny({{"a", "b"}}, {added("<x>"), added("<x><y>"), added("b<")});
  const int32_t x = 257, xy = 258, b_lt = 259;
  EXPECT_EQ(t.encode("a<x><y>b"), (std::vector<int32_t>{'a', xy, 'b'}));
  EXPECT_EQ(t.encode("<x><x>"), (std::vector<int32_t>{x, x}));
  // "ab<x>": leftmost match is "b<" at 1, which then leaves "x>" as ordinary text.
  EXPECT_EQ(t.encode("ab<x>"), (std::vector<int32_t>{'a', b_lt, 'x', '>'}));
  EXPECT_EQ(*t.decode(t.encode("zz<x><y>ab<x>")), "zz<x><y>ab<x>");
}

TEST(AddedTokens, StripAndSingleWord) {
  AddedToken l = added("<m>");
  l.lstrip = true;
  AddedToken r = added("<r>");
  r.rstrip = true;
  AddedToken w = added("tok");
  w.single_word = true;
  Tokenizer t = tiny({}, {l, r, w});
  EXPECT_EQ(t.encode("a  <m>b"), (std::vector<int32_t>{'a', 256, 'b'}));  // spaces join <m>
  EXPECT_EQ(t.encode("a<r>  b"), (std::vector<int32_t>{'a', 257, 'b'}));
  EXPECT_EQ(t.encode("tok x"), (std::vector<int32_t>{258, ' ', 'x'}));
  EXPECT_EQ(t.encode("atok"), (std::vector<int32_t>{'a', 't', 'o', 'k'}));  // inside a word: not matched
}

TEST(AddedTokens, NormalizedTokensMatchAfterNfc) {
  // GPT-NeoX-style: runs of spaces are normalized (non-special) added tokens.
  Tokenizer t = tiny({{" ", "b"}}, {added("  ", true, false), added("   ", true, false), added("\xC3\xA9", true)},
                     Normalizer::kNFC);
  const int32_t sp2 = 257, sp3 = 258, e_acute = 259;
  EXPECT_EQ(t.encode("a    b"), (std::vector<int32_t>{'a', sp3, 256}));
  EXPECT_EQ(t.encode("a     b"), (std::vector<int32_t>{'a', sp3, sp2, 'b'}));
  EXPECT_EQ(t.encode("e\xCC\x81"), (std::vector<int32_t>{e_acute}));  // matched after NFC
  Tokenizer raw = tiny({}, {added("\xC3\xA9", false)}, Normalizer::kNFC);
  EXPECT_EQ(raw.encode("e\xCC\x81"), (std::vector<int32_t>{0xC3, 0xA9}));  // raw match fails, NFC then BPE
}

TEST(Normalizer, NfcMakesComposedAndDecomposedEqual) {
  Tokenizer nfc = tiny({{"\xC3", "\xA9"}}, {}, Normalizer::kNFC);
  Tokenizer none = tiny({{"\xC3", "\xA9"}});
  EXPECT_EQ(nfc.encode("cafe\xCC\x81"), nfc.encode("caf\xC3\xA9"));
  EXPECT_NE(none.encode("cafe\xCC\x81"), none.encode("caf\xC3\xA9"));
  EXPECT_EQ(*nfc.decode(nfc.encode("cafe\xCC\x81")), "caf\xC3\xA9");
  std::string bad = "e\xCC\x81\xFF";
  EXPECT_EQ(*nfc.decode_bytes(nfc.encode(bad)), "\xC3\xA9\xFF");
}

// ---- tokenizer.json ---------------------------------------------------------------------------------

TEST(TokenizerJson, LoadSaveLoadIsIdentical) {
  std::string original = read_file(data_path("gpt2_subset.tokenizer.json"));
  auto a = Tokenizer::from_json(original);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_FALSE(a->spec().merges_as_pairs);  // GPT-2's file spells merges "a b"
  std::string path = ::testing::TempDir() + "/cmoe_tok_roundtrip.json";
  ASSERT_TRUE(a->save(path).ok());
  auto b = Tokenizer::load(path);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->spec(), b->spec());
  EXPECT_EQ(a->to_json(), b->to_json());
  std::string corpus = read_file(data_path("tokenizer_corpus.txt"));
  EXPECT_EQ(a->encode(corpus), b->encode(corpus));
  std::remove(path.c_str());

  // The other spellings survive too: Sequence[Split, ByteLevel], Sequence[NFC], merge pairs.
  auto root = json::parse(original);
  ASSERT_TRUE(root.ok());
  std::string seq = original;
  const std::string from = "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                           "\"trim_offsets\": true, \"use_regex\": true}";
  size_t at = seq.find(from);
  ASSERT_NE(at, std::string::npos);
  seq.replace(at, from.size(),
              "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
              "{\"Regex\": \"'s|'t|'re|'ve|'m|'ll|'d| ?\\\\p{L}+| ?\\\\p{N}+| ?[^\\\\s\\\\p{L}\\\\p{N}]+|\\\\s+(?!\\\\S)|"
              "\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", "
              "\"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}");
  at = seq.find("\"normalizer\": null");
  ASSERT_NE(at, std::string::npos);
  seq.replace(at, 18, "\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}]}");
  auto c = Tokenizer::from_json(seq);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->spec().split_then_byte_level);
  EXPECT_TRUE(c->spec().normalizer_in_sequence);
  EXPECT_EQ(c->encode(corpus), a->encode(unicode::nfc(corpus)));
  auto d = Tokenizer::from_json(c->to_json());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(c->spec(), d->spec());
  EXPECT_EQ(c->to_json(), d->to_json());
}

TEST(TokenizerJson, BrokenFilesNameTheProblem) {
  const std::string good = read_file(data_path("gpt2_subset.tokenizer.json"));
  auto expect_error = [&](const std::string& text, const std::string& needle) {
    auto t = Tokenizer::from_json(text, "tok.json");
    ASSERT_FALSE(t.ok()) << "accepted; wanted: " << needle;
    EXPECT_NE(msg(t.status()).find(needle), std::string::npos) << msg(t.status());
    EXPECT_EQ(msg(t.status()).rfind("tok.json: ", 0), 0u) << msg(t.status());
  };
  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return at == std::string::npos ? s : s.replace(at, from.size(), to);
  };
  expect_error(good.substr(0, good.size() / 2), "offset");
  expect_error("{\"added_tokens\": []}", "model: missing (expected object)");
  expect_error(replaced("\"type\": \"BPE\"", "\"type\": \"WordPiece\""), "model.type: \"WordPiece\" is not supported");
  expect_error(replaced("\"merges\": [\"", "\"merges\": [17, \""), "model.merges[0]: expected a string \"a b\"");
  expect_error(replaced("\"merges\": [\"", "\"merges\": [\"abc\", \""), "model.merges[0]: expected \"left right\"");
  expect_error(replaced("\"merges\": [\"", "\"merges\": [\"zzzq zzzr\", \""),
               "model.merges[0] (\"zzzq\", \"zzzr\"): token \"zzzq\" is not in model.vocab");
  expect_error(replaced("\"normalizer\": null", "\"normalizer\": {\"type\": \"NFKC\"}"),
               "normalizer.type: \"NFKC\" is not supported");
  expect_error(replaced("\"dropout\": null", "\"dropout\": 0.1"), "model.dropout: must be null or false");
  expect_error(replaced("\"truncation\": null", "\"truncation\": {}"), "truncation: must be null");
  expect_error(replaced("\"vocab\": {\"!\": 0", "\"vocab\": {\"!\": -4"), "model.vocab[\"!\"]: expected a token id");
  expect_error(replaced("\"vocab\": {\"!\": 0,", "\"vocab\": {"), "lacks the byte-level character \"!\" for byte 33");
  expect_error(replaced("\"pre_tokenizer\": {\"type\": \"ByteLevel\"", "\"pre_tokenizer\": {\"type\": \"Whitespace\""),
               "pre_tokenizer.type: \"Whitespace\" is not supported");
  expect_error(replaced("\"id\": 50256", "\"id\": \"x\""), "added_tokens[0].id: expected a token id");
  expect_error("[1, 2]", "(top level): expected object, found array");
}

// ---- trainer -----------------------------------------------------------------------------------------

std::string training_text() {
  std::string base = read_file(data_path("tokenizer_corpus.txt"));
  std::string text;
  std::mt19937 rng(5);
  const char* words[] = {"the", "of", "and", "to", "in", "is", "that", "it", "was", "for", "tokens", "merge"};
  for (int k = 0; k < 4000; ++k) {
    text += words[rng() % 12];
    text += (rng() % 9 == 0) ? ".\n" : " ";
  }
  return base + text + "<|endoftext|>" + base;
}

TEST(Trainer, DeterministicAcrossRunsAndThreads) {
  std::string text = training_text();
  TokenizerTrainOptions opts;
  opts.vocab_size = 600;
  opts.num_threads = 1;
  TokenizerTrainStats st;
  auto a = tokenizer_train({text}, opts, &st);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = tokenizer_train({text}, opts);
  opts.num_threads = 2;
  auto c = tokenizer_train({text}, opts);
  ASSERT_TRUE(b.ok() && c.ok());
  EXPECT_EQ(a->to_json(), b->to_json());
  EXPECT_EQ(a->to_json(), c->to_json());
  EXPECT_EQ(a->vocab_size(), 600);
  EXPECT_EQ(st.merges, 600 - 257);
  EXPECT_EQ(*a->token_to_id(kEndOfText), 0);
  EXPECT_EQ(a->encode("<|endoftext|>"), (std::vector<int32_t>{0}));
  EXPECT_EQ(*a->token_to_id("!"), 1);  // bytes follow in GPT-2's order
  std::vector<int32_t> ids = a->encode(text);
  EXPECT_LT(ids.size(), text.size() / 2);  // it learned something
  EXPECT_EQ(*a->decode(ids), text);
  auto reloaded = Tokenizer::from_json(a->to_json());
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ(reloaded->encode(text), ids);
}

TEST(Trainer, TiesBreakLexicographically) {
  TokenizerTrainOptions opts;
  opts.vocab_size = 258;
  auto t = tokenizer_train({"zy xw"}, opts);  // pairs zy, " x", xw all occur once
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t->spec().merges.size(), 1u);
  EXPECT_EQ(t->spec().merges[0], std::make_pair(bl(" "), std::string("x")));
  auto small = tokenizer_train({"abc"}, TokenizerTrainOptions{.vocab_size = 100});
  ASSERT_FALSE(small.ok());
  EXPECT_NE(msg(small.status()).find("below the minimum 257"), std::string::npos);
}

// A trainer that recounts every pair from scratch at every step (same tie rule).
std::vector<std::pair<std::string, std::string>> naive_train(const std::string& text, size_t n_tokens) {
  std::map<std::string, int64_t> counts;
  pretokenize_gpt2(text, [&](std::string_view w) { ++counts[std::string(w)]; });
  std::vector<std::pair<std::vector<std::string>, int64_t>> words;
  for (const auto& [w, c] : counts) {
    std::vector<std::string> sym;
    for (char ch : w) sym.emplace_back(1, ch);
    words.emplace_back(sym, c);
  }
  std::set<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.insert(std::string(1, static_cast<char>(b)));
  std::vector<std::pair<std::string, std::string>> merges;
  while (tokens.size() < n_tokens) {
    std::map<std::pair<std::string, std::string>, int64_t> pairs;
    for (const auto& [sym, c] : words) {
      for (size_t i = 0; i + 1 < sym.size(); ++i) pairs[{sym[i], sym[i + 1]}] += c;
    }
    if (pairs.empty()) break;
    auto best = pairs.begin();  // map order = lexicographic, so the first max wins ties
    for (auto it = pairs.begin(); it != pairs.end(); ++it) {
      if (it->second > best->second) best = it;
    }
    const auto [a, b] = best->first;
    merges.emplace_back(a, b);
    tokens.insert(a + b);
    for (auto& [sym, c] : words) {
      std::vector<std::string> next;
      for (size_t i = 0; i < sym.size();) {
        if (i + 1 < sym.size() && sym[i] == a && sym[i + 1] == b) {
          next.push_back(a + b);
          i += 2;
        } else {
          next.push_back(sym[i++]);
        }
      }
      sym = next;
    }
  }
  return merges;
}

TEST(Trainer, MatchesRecountingReference) {
  std::mt19937 rng(9);
  std::string text;
  for (int k = 0; k < 150; ++k) text += random_text(rng, 20) + " aaaa abab the the then\n";
  const size_t n_tokens = 256 + 120;
  auto expected = naive_train(text, n_tokens);
  TokenizerTrainOptions opts;
  opts.vocab_size = static_cast<int32_t>(n_tokens);
  opts.special_tokens = {};
  opts.num_threads = 2;
  auto t = tokenizer_train({text}, opts);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->spec().merges.size(), expected.size());
  for (size_t r = 0; r < expected.size(); ++r) {
    EXPECT_EQ(t->spec().merges[r], std::make_pair(bl(expected[r].first), bl(expected[r].second))) << "merge " << r;
  }
}

TEST(Trainer, ChunkedCountingSeesTheSameWords) {
  // Over 2 MiB so counting runs on several chunks; every chunk cut must fall on a pre-token boundary.
  std::string text;
  std::mt19937 rng(13);
  while (text.size() < (size_t{5} << 19)) text += random_text(rng, 64) + (rng() % 3 ? "\n" : "\n\n  ");
  int64_t words = 0;
  pretokenize_gpt2(text, [&](std::string_view) { ++words; });
  TokenizerTrainOptions opts;
  opts.vocab_size = 300;
  TokenizerTrainStats st;
  ASSERT_TRUE(tokenizer_train({text}, opts, &st).ok());
  EXPECT_EQ(st.words, words);
  EXPECT_EQ(st.bytes, static_cast<int64_t>(text.size()));
}

}  // namespace
}  // namespace cmoe
