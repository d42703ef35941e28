// cmd_tokenizer.cpp — `cmoe tokenizer train|encode|decode`: byte-level BPE from the command line.
//
//   train  --input FILE [FILE...] --vocab-size N --output tokenizer.json [--threads N]
//   encode --tokenizer FILE --input FILE [--json]      ids, space separated or a JSON array
//   decode --tokenizer FILE --input FILE [--bytes]     ids (JSON array or whitespace separated)
// `--input -` reads standard input. decode prints text with ill-formed UTF-8 replaced by U+FFFD;
// --bytes prints the exact bytes (encode then decode --bytes reproduces any input file).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "core/json.h"
#include "data/tokenizer.h"
#include "data/tokenizer_train.h"
#include "launch/commands.h"
#include "launch/command_line.h"

namespace cmoe {

namespace {

constexpr const char* kTokenizerUsage =
    "usage: cmoe tokenizer <train|encode|decode> [flags]\n"
    "  train  --input FILE [FILE...] --vocab-size N --output tokenizer.json [--threads N]\n"
    "  encode --tokenizer FILE --input FILE [--json]\n"
    "  decode --tokenizer FILE --input FILE [--bytes]\n";

absl::StatusOr<std::string> read_input(const std::string& path) {
  std::stringstream buf;
  if (path == "-") {
    buf << std::cin.rdbuf();
    return std::move(buf).str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  buf << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return std::move(buf).str();
}

int fail(const char* sub, const absl::Status& s) {
  std::fprintf(stderr, "cmoe tokenizer %s: %s\n", sub, std::string(s.message()).c_str());
  return 1;
}

// Ids from a JSON array or whitespace-separated integers; errors name the file and offset.
absl::StatusOr<std::vector<int32_t>> parse_ids(const std::string& text, const std::string& path) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < text.size() && (text[i] == ' ' || text[i] == '\n' || text[i] == '\r' || text[i] == '\t')) ++i;
  if (i < text.size() && text[i] == '[') {
    auto v = json::parse(text);
    if (!v.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", v.status().message()));
    for (const json::Value& e : v->as_array()) {
      if (!e.is_int() || e.as_int() < 0 || e.as_int() > INT32_MAX) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": ", json::describe_offset(text, e.offset()),
                                                       ": expected a non-negative token id"));
      }
      ids.push_back(static_cast<int32_t>(e.as_int()));
    }
    return ids;
  }
  while (i < text.size()) {
    size_t start = i;
    int64_t v = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9' && v <= INT32_MAX) v = v * 10 + (text[i++] - '0');
    bool sep_ok = i == text.size() || text[i] == ' ' || text[i] == '\n' || text[i] == '\r' || text[i] == '\t';
    if (i == start || v > INT32_MAX || !sep_ok) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", json::describe_offset(text, i == start ? start : i),
                                                     ": expected a non-negative token id (decimal, at most 2^31-1)"));
    }
    ids.push_back(static_cast<int32_t>(v));
    while (i < text.size() && (text[i] == ' ' || text[i] == '\n' || text[i] == '\r' || text[i] == '\t')) ++i;
  }
  return ids;
}

int tokenizer_train_cmd(int argc, char** argv) {
  const std::vector<FlagSpec> specs = {
      {"input", true, true, "training text file(s); files may also follow as positional arguments"},
      {"vocab-size", true, false, "vocabulary size including <|endoftext|> and the 256 bytes"},
      {"output", true, false, "where to write tokenizer.json"},
      {"threads", true, false, "threads (default: OpenMP's)"},
  };
  const CommandSpec spec{"tokenizer train", specs, {"vocab-size", "output"}, 0, 1 << 20, "FILE..."};
  auto flags = parse_command_line(spec, argc, argv, 3);
  if (!flags) return kExitUsage;
  std::vector<std::string> inputs = flags->all("input");
  inputs.insert(inputs.end(), flags->positional.begin(), flags->positional.end());
  if (inputs.empty()) {
    std::fprintf(stderr, "cmoe tokenizer train: no input: give --input FILE (or FILE...)\n");
    return kExitUsage;
  }
  TokenizerTrainOptions opts;
  const auto vocab = flag_int(*flags, spec.name, "vocab-size", 0, 1, INT32_MAX);
  const auto threads = flag_int(*flags, spec.name, "threads", 0, 0, 4096);
  if (!vocab || !threads) return kExitUsage;
  opts.vocab_size = static_cast<int>(*vocab);
  if (flags->has("threads")) opts.num_threads = static_cast<int>(*threads);
  TokenizerTrainStats st;
  auto tok = tokenizer_train_files(inputs, opts, &st);
  if (!tok.ok()) return fail("train", tok.status());
  absl::Status saved = tok->save(flags->get("output"));
  if (!saved.ok()) return fail("train", saved);
  std::fprintf(stderr,
               "cmoe tokenizer train: %.1f MB, %lld words (%lld unique), %d merges, vocab %d; "
               "count %.2f s, merge %.2f s -> %s\n",
               st.bytes / 1e6, static_cast<long long>(st.words), static_cast<long long>(st.unique_words), st.merges,
               tok->vocab_size(), st.count_seconds, st.merge_seconds, flags->get("output").c_str());
  return 0;
}

int tokenizer_encode_cmd(int argc, char** argv) {
  const std::vector<FlagSpec> specs = {
      {"tokenizer", true, false, "tokenizer.json"},
      {"input", true, false, "text file to encode (- for stdin)"},
      {"json", false, false, "print the ids as a JSON array"},
  };
  auto flags = parse_command_line({"tokenizer encode", specs, {"tokenizer", "input"}}, argc, argv, 3);
  if (!flags) return kExitUsage;
  auto tok = Tokenizer::load(flags->get("tokenizer"));
  if (!tok.ok()) return fail("encode", tok.status());
  auto text = read_input(flags->get("input"));
  if (!text.ok()) return fail("encode", text.status());
  std::vector<int32_t> ids = tok->encode(*text);
  std::string out;
  if (flags->has("json")) {
    json::append_int_array(&out, ids);
  } else {
    for (size_t k = 0; k < ids.size(); ++k) {
      if (k) out += ' ';
      absl::StrAppend(&out, ids[k]);
    }
  }
  out += '\n';
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

int tokenizer_decode_cmd(int argc, char** argv) {
  const std::vector<FlagSpec> specs = {
      {"tokenizer", true, false, "tokenizer.json"},
      {"input", true, false, "ids: a JSON array or whitespace-separated integers (- for stdin)"},
      {"bytes", false, false, "print the exact bytes instead of text (no U+FFFD replacement)"},
  };
  auto flags = parse_command_line({"tokenizer decode", specs, {"tokenizer", "input"}}, argc, argv, 3);
  if (!flags) return kExitUsage;
  auto tok = Tokenizer::load(flags->get("tokenizer"));
  if (!tok.ok()) return fail("decode", tok.status());
  const std::string path = flags->get("input");
  auto text = read_input(path);
  if (!text.ok()) return fail("decode", text.status());
  auto ids = parse_ids(*text, path);
  if (!ids.ok()) return fail("decode", ids.status());
  auto out = flags->has("bytes") ? tok->decode_bytes(*ids) : tok->decode(*ids);
  if (!out.ok()) return fail("decode", absl::InvalidArgumentError(absl::StrCat(path, ": ", out.status().message())));
  std::fwrite(out->data(), 1, out->size(), stdout);
  return 0;
}

}  // namespace

int cmd_tokenizer(int argc, char** argv) {
  if (argc < 3) {
    std::fputs(kTokenizerUsage, stderr);
    return 2;
  }
  const std::string sub = argv[2];
  if (sub == "train") return tokenizer_train_cmd(argc, argv);
  if (sub == "encode") return tokenizer_encode_cmd(argc, argv);
  if (sub == "decode") return tokenizer_decode_cmd(argc, argv);
  if (sub == "--help" || sub == "-h" || sub == "help") {
    std::fputs(kTokenizerUsage, stdout);
    return 0;
  }
  std::fprintf(stderr, "cmoe tokenizer: unknown subcommand '%s'\n%s", sub.c_str(), kTokenizerUsage);
  return 2;
}

}  // namespace cmoe
