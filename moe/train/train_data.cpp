// train_data.cpp — loaders of a run (see train_data.h).
#include "moe/train/train_data.h"

namespace cmoe {

namespace {

std::vector<data::LoaderSource> train_sources(const config::DataConfig& d) {
  std::vector<data::LoaderSource> out;
  if (!d.prefix().empty()) out.push_back({d.prefix(), 1.0});
  for (const auto& s : d.sources()) out.push_back({s.prefix(), s.weight()});
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<data::Loader>> open_loader(const config::RunConfig& cfg, bool train, int64_t num_samples,
                                                          int64_t consumed, int dp_size, int dp_rank) {
  data::LoaderConfig lc;
  const auto& d = cfg.data();
  if (train || d.valid_prefix().empty()) {
    lc.sources = train_sources(d);
    lc.split = d.split();
  } else {
    lc.sources = {{d.valid_prefix(), 1.0}};
    lc.split = d.valid_split();
  }
  if (lc.sources.empty()) {
    return absl::InvalidArgumentError("config: data.prefix (or data.sources) is not set; point it at a "
                                      "Megatron dataset prefix (PREFIX.bin + PREFIX.idx)");
  }
  lc.split_name = train ? data::Split::kTrain : data::Split::kValid;
  lc.seq_length = cfg.model().seq_len();
  lc.micro_batch = cfg.train().micro_batch_size();
  lc.dp_size = dp_size;
  lc.dp_rank = dp_rank;
  lc.num_samples = num_samples;
  lc.seed = static_cast<uint32_t>(cfg.train().seed());
  lc.prefetch = cfg.data().prefetch();
  lc.vocab_size = cfg.model().vocab_size();
  return data::Loader::open(lc, data::LoaderState{consumed});
}

BatchFn batches_of(std::shared_ptr<data::Loader> loader) {
  return [loader]() -> absl::StatusOr<Batch> {
    CMOE_ASSIGN_OR_RETURN(data::MicroBatch mb, loader->next());
    return Batch{mb.tokens, mb.targets};
  };
}

BatchFn validation_batches(const config::RunConfig& cfg, int dp_size, int dp_rank) {
  auto l = open_loader(cfg, false, cfg.train().eval_batches() * cfg.train().micro_batch_size() * dp_size, 0, dp_size,
                       dp_rank);
  if (!l.ok()) {
    absl::Status st = l.status();
    return [st]() -> absl::StatusOr<Batch> { return st; };
  }
  return batches_of(std::shared_ptr<data::Loader>(std::move(*l)));
}

}  // namespace cmoe
