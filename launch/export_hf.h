// export_hf.h — the files `cmoe export` writes beside the weights so the export loads elsewhere
// as a Hugging Face model directory: sharded safetensors with their index, the config keys that
// depend on the tokenizer, generation_config.json, tokenizer_config.json and
// special_tokens_map.json (docs/export.md lists every file and key).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "checkpoint/checkpoint.h"
#include "moe/train/config.h"

namespace cmoe {

// A size as Hugging Face's max_shard_size spells it: an integer number of bytes, or a number
// with a unit, KB / MB / GB / TB (powers of 1000) or KiB / MiB / GiB / TiB (powers of 1024),
// units case-insensitive ("2GB", "500MB", "1.5GiB"). Must be positive.
absl::StatusOr<int64_t> parse_shard_size(const std::string& text);

// Hugging Face's split of a state dict into shards: tensors in order; a tensor larger than
// `max_bytes` gets a shard of its own; otherwise one that would take the current shard past
// `max_bytes` closes it and opens the next. Returns each shard's tensor indices, in order.
std::vector<std::vector<size_t>> plan_shards(const std::vector<int64_t>& tensor_bytes, int64_t max_bytes);

// Writes `tensors` to `path` as one safetensors file, or, when they need more than one shard of
// `max_shard_bytes` (0 = never shard), as STEM-0000i-of-0000N.safetensors beside it plus
// STEM.safetensors.index.json ({"metadata": {"total_size": bytes}, "weight_map": {name: file}},
// keys sorted, as transformers' save_pretrained writes it). STEM is `path` without
// ".safetensors". Returns the files written (index last).
absl::StatusOr<std::vector<std::string>> write_safetensors_shards(const std::string& path,
                                                                  const std::vector<NamedTensor>& tensors,
                                                                  const std::map<std::string, std::string>& metadata,
                                                                  int64_t max_shard_bytes);

// The special tokens of the tokenizer an export ships (absent: no tokenizer).
struct ExportTokens {
  std::optional<int32_t> eos_id;  // <|endoftext|>: documents end with it, so it is BOS and EOS
  std::string eos_token;
  int32_t tokenizer_vocab = 0;    // one more than the tokenizer's largest id
};

// hf_config_json's text with the tokenizer's bos/eos ids and the LLaMA keys whose values are
// fixed for cmoe (use_cache, pretraining_tp, rope_scaling, attention_dropout, mlp_bias) added.
absl::StatusOr<std::string> hf_config_complete(const std::string& config_json, const ExportTokens& tokens);
// generation_config.json: bos/eos/pad ids (pad = eos: the vocabulary has no padding token) and
// max_length = model.seq_len.
std::string hf_generation_config(const config::ModelConfig& m, const ExportTokens& tokens);
// tokenizer_config.json (PreTrainedTokenizerFast over tokenizer.json) and special_tokens_map.json.
std::string hf_tokenizer_config(const config::ModelConfig& m, const ExportTokens& tokens);
std::string hf_special_tokens_map(const ExportTokens& tokens);

}  // namespace cmoe
