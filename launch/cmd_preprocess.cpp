// cmd_preprocess.cpp — `cmoe preprocess`: raw text (.txt, .jsonl, .jsonl.zst Pile records) ->
// tokenized Megatron .bin/.idx datasets.
//
//   cmoe preprocess --input FILE... --tokenizer FILE --output-prefix P [--append-eod]
//                   [--valid-every K] [--shard-docs N] [--workers N]
// Documents: a .jsonl(.zst) line is one document (its "text"); a .txt file is one document.
// Tokenization runs in parallel over batches of documents; output order is input order, so
// the result does not depend on --workers. With --valid-every K, every K-th document goes to
// P_valid and the rest to P_train (else everything to P). With --shard-docs N, each output is
// cut into shards of N documents named <out>_NNNNN. Outputs are written under temporary names
// and renamed when complete: an interrupted run never leaves a partial dataset behind, and
// re-running replaces the outputs whole. An input with no documents at all is an error (exit 1,
// nothing written).
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/check.h"
#include "data/indexed_dataset.h"
#include "data/jsonl_reader.h"
#include "data/line_reader.h"
#include "data/tokenizer.h"
#include "launch/commands.h"
#include "launch/command_line.h"

namespace cmoe {

namespace {

int fail(const absl::Status& s) {
  std::fprintf(stderr, "cmoe preprocess: %s\n", std::string(s.message()).c_str());
  return 1;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// One output stream (train, valid or all), cut into shards of shard_docs documents.
class ShardedOutput {
 public:
  ShardedOutput(std::string prefix, data::TokenDType dtype, int64_t shard_docs)
      : prefix_(std::move(prefix)), dtype_(dtype), shard_docs_(shard_docs) {}

  absl::Status add(std::span<const int32_t> doc) {
    if (!writer_.has_value() || (shard_docs_ > 0 && docs_in_shard_ == shard_docs_)) {
      CMOE_RETURN_IF_ERROR(close_shard());
      std::string name = shard_docs_ > 0 ? absl::StrFormat("%s_%05d", prefix_, shard_) : prefix_;
      CMOE_ASSIGN_OR_RETURN(data::IndexedDatasetWriter w, data::IndexedDatasetWriter::create(name, dtype_));
      writer_.emplace(std::move(w));
      names_.push_back(name);
      ++shard_;
      docs_in_shard_ = 0;
    }
    ++docs_in_shard_;
    ++docs_;
    tokens_ += static_cast<int64_t>(doc.size());
    return writer_->add_document(doc);
  }
  absl::Status close_shard() {
    if (!writer_.has_value()) return absl::OkStatus();
    absl::Status st = writer_->finish();
    writer_.reset();
    return st;
  }
  int64_t docs() const { return docs_; }
  int64_t tokens() const { return tokens_; }
  const std::vector<std::string>& names() const { return names_; }

 private:
  std::string prefix_;
  data::TokenDType dtype_;
  int64_t shard_docs_;
  std::optional<data::IndexedDatasetWriter> writer_;
  std::vector<std::string> names_;
  int64_t shard_ = 0, docs_in_shard_ = 0, docs_ = 0, tokens_ = 0;
};

}  // namespace

int cmd_preprocess(int argc, char** argv) {
  const std::vector<FlagSpec> specs = {
      {"input", true, true, "input files: .txt (one document), .jsonl or .jsonl.zst (one {\"text\": ...} per line)", true},
      {"tokenizer", true, false, "Hugging Face tokenizer.json"},
      {"output-prefix", true, false, "output prefix P: writes P.bin/P.idx (or P_train/P_valid, shards P_NNNNN)"},
      {"append-eod", false, false, "append the end-of-document token (<|endoftext|>) to every document"},
      {"valid-every", true, false, "send every K-th document to P_valid, the rest to P_train (0 = no split)"},
      {"shard-docs", true, false, "documents per output shard (0 = one file per output)"},
      {"workers", true, false, "tokenizer threads (default: all cores)"},
  };
  const CommandSpec spec{"preprocess", specs, {"input", "tokenizer", "output-prefix"}};
  auto flags = parse_command_line(spec, argc, argv, 2);
  if (!flags) return kExitUsage;
  const auto valid_every_flag = flag_int(*flags, spec.name, "valid-every", 0, 0);
  const auto shard_docs_flag = flag_int(*flags, spec.name, "shard-docs", 0, 0);
  const auto workers_flag = flag_int(*flags, spec.name, "workers", omp_get_max_threads(), 1, 4096);
  if (!valid_every_flag || !shard_docs_flag || !workers_flag) return kExitUsage;
  const int64_t valid_every = *valid_every_flag, shard_docs = *shard_docs_flag, workers = *workers_flag;
  auto tok = Tokenizer::load(flags->get("tokenizer"));
  if (!tok.ok()) return fail(tok.status());
  std::optional<int32_t> eod = tok->eot_id();
  if (flags->has("append-eod") && !eod.has_value()) {
    return fail(absl::InvalidArgumentError(absl::StrCat(flags->get("tokenizer"), ": --append-eod needs a ",
                                                        kEndOfText, " token, and this tokenizer has none")));
  }
  const data::TokenDType dtype = data::token_dtype_for_vocab(tok->vocab_size());
  const std::string prefix = flags->get("output-prefix");
  ShardedOutput train(valid_every > 0 ? prefix + "_train" : prefix, dtype, shard_docs);
  ShardedOutput valid(prefix + "_valid", dtype, shard_docs);

  const auto t0 = std::chrono::steady_clock::now();
  int64_t bytes = 0, doc_index = 0;
  std::vector<std::string> batch;
  constexpr size_t kBatch = 512;
  auto flush = [&]() -> absl::Status {
    std::vector<std::vector<int32_t>> ids(batch.size());
#pragma omp parallel for schedule(dynamic, 4) num_threads(static_cast<int>(workers))
    for (size_t i = 0; i < batch.size(); ++i) {
      tok->encode(batch[i], &ids[i]);
      if (flags->has("append-eod")) ids[i].push_back(*eod);
    }
    for (size_t i = 0; i < batch.size(); ++i, ++doc_index) {
      ShardedOutput& out = valid_every > 0 && doc_index % valid_every == valid_every - 1 ? valid : train;
      CMOE_RETURN_IF_ERROR(out.add(ids[i]));
    }
    batch.clear();
    return absl::OkStatus();
  };

  for (const std::string& path : flags->all("input")) {
    if (ends_with(path, ".txt")) {
      std::ifstream in(path, std::ios::binary);
      if (!in) return fail(absl::NotFoundError(absl::StrCat("cannot open ", path)));
      std::stringstream ss;
      ss << in.rdbuf();
      batch.push_back(ss.str());
      bytes += static_cast<int64_t>(batch.back().size());
    } else if (ends_with(path, ".jsonl") || ends_with(path, ".jsonl.zst") || ends_with(path, ".zst")) {
      auto reader = data::LineReader::open(path);
      if (!reader.ok()) return fail(reader.status());
      std::string line;
      for (;;) {
        auto more = (*reader)->next(&line);
        if (!more.ok()) return fail(more.status());
        if (!*more) break;
        if (line.empty()) continue;
        auto rec = data::jsonl_parse_record(line, path, (*reader)->line_number());
        if (!rec.ok()) return fail(rec.status());
        bytes += static_cast<int64_t>(rec->text.size());
        batch.push_back(std::move(rec->text));
        if (batch.size() == kBatch) {
          if (auto st = flush(); !st.ok()) return fail(st);
        }
      }
    } else {
      return fail(absl::InvalidArgumentError(absl::StrCat(path, ": unknown input type; expected .txt, .jsonl or .jsonl.zst")));
    }
    if (batch.size() >= kBatch) {
      if (auto st = flush(); !st.ok()) return fail(st);
    }
  }
  if (auto st = flush(); !st.ok()) return fail(st);
  const std::vector<std::string> inputs = flags->all("input");
  if (train.docs() + valid.docs() == 0) {
    // Nothing to write: say so (an empty dataset cannot train) instead of writing nothing silently.
    return fail(absl::InvalidArgumentError(absl::StrCat(
        "no documents in ", absl::StrJoin(inputs, ", "),
        " (a .jsonl needs one {\"text\": ...} record per line; empty lines are skipped): nothing written")));
  }
  if (valid_every > 0 && valid.docs() == 0) {
    std::fprintf(stderr, "cmoe preprocess: note: %lld documents and --valid-every %lld: none reaches %s_valid, which is "
                 "not written\n", static_cast<long long>(train.docs()), static_cast<long long>(valid_every), prefix.c_str());
  }
  if (auto st = train.close_shard(); !st.ok()) return fail(st);
  if (auto st = valid.close_shard(); !st.ok()) return fail(st);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("preprocess: %lld documents, %lld tokens, %.1f MB of text in %.1f s (%.2f MB/s, %lld workers)\n",
              static_cast<long long>(train.docs() + valid.docs()), static_cast<long long>(train.tokens() + valid.tokens()),
              bytes / 1e6, secs, bytes / 1e6 / secs, static_cast<long long>(workers));
  for (const ShardedOutput* o : {&train, &valid}) {
    for (const std::string& n : o->names()) std::printf("  wrote %s.bin / %s.idx\n", n.c_str(), n.c_str());
  }
  return 0;
}

}  // namespace cmoe
