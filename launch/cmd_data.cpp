// cmd_data.cpp — `cmoe data inspect|samples`: a dataset's header facts and documents, and the
// Megatron-compatible sample order with each sample's tokens (to compare with Megatron runs).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/check.h"
#include "core/json.h"
#include "data/gpt_dataset.h"
#include "data/indexed_dataset.h"
#include "data/llmc_dataset.h"
#include "launch/commands.h"
#include "launch/command_line.h"

namespace cmoe {

namespace {

constexpr const char* kDataUsage =
    "usage: cmoe data <subcommand> [flags]\n"
    "\n"
    "subcommands:\n"
    "  inspect PREFIX [--json] [--docs N] [--unigram]\n"
    "      header facts of a Megatron dataset (PREFIX.bin/.idx), an llm.c shard (FILE.bin) or a\n"
    "      glob of llm.c shards ('DIR/name_train_*.bin'); --docs N also prints the first N\n"
    "      documents' token ids as JSON; --unigram the tokens' unigram entropy\n"
    "  samples PREFIX --seq-length T --num-samples N [--seed R] [--split 969,30,1]\n"
    "          [--split-name train] [--json] [--max-samples K]\n"
    "      the Megatron GPT dataset's sample order and each sample's T+1 tokens (PREFIX may be\n"
    "      llm.c shards, read as documents cut at the end-of-text token, as training reads them)\n";

int fail(const std::string& cmd, const absl::Status& s) { return command_failed("data " + cmd, s); }

json::Value ids_json(const std::vector<int32_t>& ids) {
  json::Value a = json::Value::array();
  for (int32_t t : ids) a.push_back(json::Value::integer(t));
  return a;
}

// Unigram entropy H = -sum_v p_v ln p_v (nats/token): the loss of the best model that ignores
// context, the bar a trained LM's validation loss must fall well below. One pass over the data.
absl::StatusOr<double> unigram_entropy(const data::SequenceSource& ds) {
  std::vector<int64_t> counts;
  std::vector<int32_t> toks;
  for (int64_t i = 0; i < ds.num_sequences(); ++i) {
    toks.resize(static_cast<size_t>(ds.sequence_length(i)));
    CMOE_RETURN_IF_ERROR(ds.read(i, 0, ds.sequence_length(i), toks.data()));
    for (int32_t t : toks) {
      if (t < 0) continue;
      if (static_cast<size_t>(t) >= counts.size()) counts.resize(static_cast<size_t>(t) + 1, 0);
      ++counts[static_cast<size_t>(t)];
    }
  }
  double h = 0, n = static_cast<double>(ds.num_tokens());
  for (int64_t c : counts)
    if (c > 0) h -= c / n * std::log(c / n);
  return h;
}

// One shard or a glob of shards; documents are the source's sequences (cut before each
// delimiter token, data/llmc_dataset.h), as training reads them.
int inspect_llmc(const std::string& path, bool json_out, int64_t ndocs, bool unigram) {
  auto ds = data::LlmcDataset::open(path);
  if (!ds.ok()) return fail("inspect", ds.status());
  const char* kind = ds->kind() == data::LlmcShard::Kind::kGpt2 ? "gpt2" : "llama3";
  json::Value docs = json::Value::array();
  std::vector<int32_t> cur;
  for (int64_t i = 0; i < std::min(ndocs, ds->num_sequences()); ++i) {
    cur.resize(static_cast<size_t>(ds->sequence_length(i)));
    if (auto s = ds->read(i, 0, ds->sequence_length(i), cur.data()); !s.ok()) return fail("inspect", s);
    docs.push_back(ids_json(cur));
  }
  double h = 0;
  if (unigram) {
    auto e = unigram_entropy(*ds);
    if (!e.ok()) return fail("inspect", e.status());
    h = *e;
  }
  const long long tokens = static_cast<long long>(ds->num_tokens());
  const long long sequences = static_cast<long long>(ds->num_sequences());
  if (json_out) {
    json::Value j = json::Value::object();
    j.set("format", json::Value::string("llmc"));
    j.set("path", json::Value::string(path));
    j.set("kind", json::Value::string(kind));
    j.set("version", json::Value::integer(ds->shards().front().version()));
    j.set("shards", json::Value::integer(static_cast<int64_t>(ds->shards().size())));
    j.set("tokens", json::Value::integer(tokens));
    j.set("num_documents", json::Value::integer(sequences));
    j.set("delimiter", json::Value::integer(ds->delimiter()));
    if (ndocs > 0) j.set("documents", std::move(docs));
    if (unigram) j.set("unigram_entropy_nats", json::Value::formatted(h, "%.6f"));
    std::printf("%s\n", json::serialize_line(j).c_str());
  } else {
    std::printf("format:    llm.c shard (%s)\npath:      %s\nversion:   %d\nshards:    %zu\ntokens:    %lld\n"
                "documents: %lld (cut before each %d)\n",
                kind, path.c_str(), ds->shards().front().version(), ds->shards().size(), tokens, sequences,
                ds->delimiter());
    if (unigram) std::printf("unigram:   %.4f nats/token (perplexity %.1f)\n", h, std::exp(h));
    if (ndocs > 0) std::printf("documents: %s\n", json::serialize_line(docs).c_str());
  }
  return 0;
}

int cmd_data_inspect(int argc, char** argv) {
  CommandSpec spec{"data inspect",
                   {{"json", false, false, "print JSON"},
                    {"docs", true, false, "also print the first N documents' token ids"},
                    {"unigram", false, false, "also compute the unigram entropy of the tokens (one pass over the data)"}},
                   {}, 1, 1, "PREFIX"};
  auto flags = parse_command_line(spec, argc, argv, 3);
  if (!flags) return kExitUsage;
  const std::optional<int64_t> ndocs = flag_int(*flags, spec.name, "docs", 0, 0);
  if (!ndocs) return kExitUsage;
  const std::string prefix = flags->positional[0];
  const bool json_out = flags->has("json");
  if (data::is_llmc_path(prefix)) return inspect_llmc(prefix, json_out, *ndocs, flags->has("unigram"));
  auto ds = data::IndexedDataset::open(prefix);
  if (!ds.ok()) return fail("inspect", ds.status());
  int64_t min_len = 0, max_len = 0;
  for (int64_t i = 0; i < ds->num_sequences(); ++i) {
    const int64_t l = ds->sequence_length(i);
    min_len = i == 0 ? l : std::min(min_len, l);
    max_len = std::max(max_len, l);
  }
  json::Value docs = json::Value::array();
  for (int64_t j = 0; j < std::min(*ndocs, ds->num_documents()); ++j) {
    std::vector<int32_t> toks;
    for (int64_t i = ds->document_index(j); i < ds->document_index(j + 1); ++i) {
      const size_t at = toks.size();
      toks.resize(at + static_cast<size_t>(ds->sequence_length(i)));
      if (auto s = ds->read(i, 0, ds->sequence_length(i), toks.data() + at); !s.ok()) return fail("inspect", s);
    }
    docs.push_back(ids_json(toks));
  }
  std::optional<double> h;
  if (flags->has("unigram")) {
    auto e = unigram_entropy(*ds);
    if (!e.ok()) return fail("inspect", e.status());
    h = *e;
  }
  if (json_out) {
    json::Value j = json::Value::object();
    j.set("format", json::Value::string("megatron"));
    j.set("prefix", json::Value::string(prefix));
    j.set("dtype", json::Value::string(data::token_dtype_name(ds->dtype())));
    j.set("sequences", json::Value::integer(ds->num_sequences()));
    j.set("documents", json::Value::integer(ds->num_documents()));
    j.set("tokens", json::Value::integer(ds->num_tokens()));
    j.set("bin_bytes", json::Value::integer(static_cast<int64_t>(ds->bin_size())));
    j.set("min_sequence_length", json::Value::integer(min_len));
    j.set("max_sequence_length", json::Value::integer(max_len));
    if (*ndocs > 0) j.set("document_tokens", std::move(docs));
    if (h) j.set("unigram_entropy_nats", json::Value::formatted(*h, "%.6f"));
    std::printf("%s\n", json::serialize_line(j).c_str());
  } else {
    std::printf("format:     Megatron indexed dataset (MMIDIDX v1)\nprefix:     %s\ndtype:      %s\n"
                "sequences:  %lld\ndocuments:  %lld\ntokens:     %lld\nbin bytes:  %zu\n"
                "seq length: min %lld, max %lld\n",
                prefix.c_str(), data::token_dtype_name(ds->dtype()), static_cast<long long>(ds->num_sequences()),
                static_cast<long long>(ds->num_documents()), static_cast<long long>(ds->num_tokens()), ds->bin_size(),
                static_cast<long long>(min_len), static_cast<long long>(max_len));
    if (h) std::printf("unigram:    %.4f nats/token (perplexity %.1f)\n", *h, std::exp(*h));
    if (*ndocs > 0) std::printf("documents:  %s\n", json::serialize_line(docs).c_str());
  }
  return 0;
}

int cmd_data_samples(int argc, char** argv) {
  CommandSpec spec{"data samples",
                   {{"seq-length", true, false, "sequence length T (samples hold T+1 tokens)"},
                    {"num-samples", true, false, "samples requested N (sets the number of epochs)"},
                    {"seed", true, false, "shuffle seed (Megatron's --seed, default 1234)"},
                    {"split", true, false, "split weights, default 969,30,1"},
                    {"split-name", true, false, "train, valid or test (default train)"},
                    {"max-samples", true, false, "print at most K samples (default N)"},
                    {"json", false, false, "print JSON"}},
                   {"seq-length", "num-samples"},
                   1,
                   1,
                   "PREFIX"};
  auto flags = parse_command_line(spec, argc, argv, 3);
  if (!flags) return kExitUsage;
  const auto T = flag_int(*flags, spec.name, "seq-length", 0, 1);
  const auto N = flag_int(*flags, spec.name, "num-samples", 0, 0);
  const auto seed = flag_int(*flags, spec.name, "seed", 1234, 0, 0xffffffffLL);
  if (!T || !N || !seed) return kExitUsage;
  const auto max_samples = flag_int(*flags, spec.name, "max-samples", *N);
  if (!max_samples) return kExitUsage;
  auto split = data::split_from_name(flags->get("split-name", "train"));
  if (!split.ok()) return fail("samples", split.status());
  const std::string prefix = flags->positional[0];
  auto opened = data::open_sequence_source(prefix);
  if (!opened.ok()) return fail("samples", opened.status());
  std::shared_ptr<const data::SequenceSource> ds = std::move(*opened);
  const std::string split_spec = flags->get("split", "969,30,1");
  auto ranges = data::split_ranges(split_spec, ds->num_sequences());
  if (!ranges.ok()) return fail("samples", ranges.status());
  const auto& range = (*ranges)[static_cast<int>(*split)];
  if (!range.has_value()) {
    return fail("samples", absl::InvalidArgumentError(absl::StrCat("split '", split_spec, "' has no ",
                                                                   data::split_name(*split), " part")));
  }
  auto g = data::GptDataset::build(ds, *range, data::GptDatasetConfig{*T, *N, static_cast<uint32_t>(*seed)});
  if (!g.ok()) return fail("samples", g.status());
  const int64_t count = std::clamp<int64_t>(*max_samples, 0, *N);
  const bool json_out = flags->has("json");
  if (json_out) {
    // The header object, then the samples streamed one per line (the list can be long).
    json::Value j = json::Value::object();
    j.set("prefix", json::Value::string(prefix));
    j.set("split", json::Value::string(data::split_name(*split)));
    json::Value r = json::Value::array();
    r.push_back(json::Value::integer(range->begin));
    r.push_back(json::Value::integer(range->end));
    j.set("sequence_range", std::move(r));
    j.set("seq_length", json::Value::integer(*T));
    j.set("num_samples", json::Value::integer(*N));
    j.set("seed", json::Value::integer(*seed));
    j.set("epochs", json::Value::integer(g->num_epochs()));
    j.set("separate_final_epoch", json::Value::boolean(g->separate_final_epoch()));
    j.set("total_samples", json::Value::integer(g->size()));
    j.set("samples", json::Value::array());
    std::string head = json::serialize_line(j);
    head.resize(head.size() - 3);  // without the empty list's "]}" closing
    std::printf("%s[", head.c_str());
  } else {
    std::printf("# %s %s [%lld, %lld): T=%lld N=%lld seed=%lld epochs=%lld separate_final_epoch=%d samples=%lld\n",
                prefix.c_str(), data::split_name(*split), static_cast<long long>(range->begin),
                static_cast<long long>(range->end), static_cast<long long>(*T), static_cast<long long>(*N),
                static_cast<long long>(*seed), static_cast<long long>(g->num_epochs()), g->separate_final_epoch(),
                static_cast<long long>(g->size()));
  }
  std::vector<int32_t> s(static_cast<size_t>(*T + 1));
  for (int64_t k = 0; k < count; ++k) {
    if (auto st = g->sample(k, s); !st.ok()) return fail("samples", st);
    const int64_t j = g->shuffle_index()[k];
    if (json_out) {
      json::Value o = json::Value::object();
      o.set("k", json::Value::integer(k));
      o.set("sample", json::Value::integer(j));
      o.set("tokens", ids_json(s));
      std::printf("%s\n  %s", k ? "," : "", json::serialize_line(o).c_str());
    } else {
      std::printf("%lld %lld: %s\n", static_cast<long long>(k), static_cast<long long>(j), absl::StrJoin(s, " ").c_str());
    }
  }
  if (json_out) std::printf("\n]}\n");
  return 0;
}

}  // namespace

int cmd_data(int argc, char** argv) {
  if (argc < 3 || !std::strcmp(argv[2], "--help") || !std::strcmp(argv[2], "-h")) {
    std::fputs(kDataUsage, argc < 3 ? stderr : stdout);
    return argc < 3 ? 2 : 0;
  }
  const std::string sub = argv[2];
  if (sub == "inspect") return cmd_data_inspect(argc, argv);
  if (sub == "samples") return cmd_data_samples(argc, argv);
  std::fprintf(stderr, "cmoe data: unknown subcommand '%s'\n%s", sub.c_str(), kDataUsage);
  return 2;
}

}  // namespace cmoe
