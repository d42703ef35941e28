// gpt_dataset.cpp — see gpt_dataset.h; each step mirrors megatron/core/datasets/gpt_dataset.py
// and helpers.cpp (build_sample_idx) so the arrays match Megatron's element for element.
#include "data/gpt_dataset.h"

#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/check.h"

namespace cmoe::data {

uint64_t NumpyRandomState::interval(uint64_t max) {
  if (max == 0) return 0;
  uint64_t mask = max;
  mask |= mask >> 1;
  mask |= mask >> 2;
  mask |= mask >> 4;
  mask |= mask >> 8;
  mask |= mask >> 16;
  mask |= mask >> 32;
  uint64_t v;
  if (max <= 0xffffffffULL) {
    while ((v = (next_u32() & mask)) > max) {
    }
  } else {
    while ((v = (next_u64() & mask)) > max) {
    }
  }
  return v;
}

absl::StatusOr<Split> split_from_name(const std::string& name) {
  if (name == "train") return Split::kTrain;
  if (name == "valid" || name == "validation" || name == "val") return Split::kValid;
  if (name == "test") return Split::kTest;
  return absl::InvalidArgumentError(absl::StrCat("unknown split name '", name, "', expected train, valid or test"));
}

const char* split_name(Split s) {
  switch (s) {
    case Split::kTrain: return "train";
    case Split::kValid: return "valid";
    case Split::kTest: return "test";
  }
  return "?";
}

namespace {

// The (up to) three weights of a split string; errors start with `what` ("--split", "data.split").
absl::StatusOr<std::array<double, 3>> split_weights(const std::string& split, const std::string& what) {
  std::vector<std::string> parts = absl::StrSplit(split, ',');
  if (parts.empty() || parts.size() > 3) {
    return absl::InvalidArgumentError(absl::StrCat(what, " '", split, "': expected 1 to 3 comma-separated weights"));
  }
  std::array<double, 3> w = {0, 0, 0};
  for (size_t i = 0; i < parts.size(); ++i) {
    if (!absl::SimpleAtod(parts[i], &w[i]) || !(w[i] >= 0) || !std::isfinite(w[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " '", split, "': weight '", parts[i], "' is not a non-negative number"));
    }
  }
  // numpy.sum over 3 float64 values reduces as w0 + (w1 + w2) (first element, then the
  // pairwise-sum inner loop over the rest).
  if (!(w[0] + (w[1] + w[2]) > 0)) return absl::InvalidArgumentError(absl::StrCat(what, " '", split, "': weights sum to 0"));
  return w;
}

}  // namespace

absl::Status split_check(const std::string& split, const std::string& what) { return split_weights(split, what).status(); }

absl::StatusOr<std::array<std::optional<SplitRange>, 3>> split_ranges(const std::string& split, int64_t n) {
  using Weights = std::array<double, 3>;
  CMOE_ASSIGN_OR_RETURN(const Weights w, split_weights(split, "--split"));
  const double sum = w[0] + (w[1] + w[2]);
  double bookend[4] = {0, 0, 0, 0};
  for (int i = 0; i < 3; ++i) bookend[i + 1] = bookend[i] + w[i] / sum;
  std::array<std::optional<SplitRange>, 3> out;
  for (int i = 0; i < 3; ++i) {
    if (bookend[i + 1] <= bookend[i]) continue;
    // Python's round() on a float rounds half to even, as nearbyint does in the default mode.
    const auto beg = static_cast<int64_t>(std::nearbyint(bookend[i] * static_cast<double>(n)));
    const auto end = static_cast<int64_t>(std::nearbyint(bookend[i + 1] * static_cast<double>(n)));
    out[i] = SplitRange{beg, end};
  }
  return out;
}

namespace {

// Megatron's _build_document_index: `ids` repeated `epochs` times (epoch-major), shuffled.
void append_document_index(const SplitRange& ids, int64_t epochs, NumpyRandomState* rng, std::vector<int32_t>* out) {
  const size_t start = out->size();
  for (int64_t e = 0; e < epochs; ++e) {
    for (int64_t i = ids.begin; i < ids.end; ++i) out->push_back(static_cast<int32_t>(i));
  }
  rng->shuffle(std::span<int32_t>(out->data() + start, out->size() - start));
}

void append_shuffled_range(int64_t begin, int64_t end, NumpyRandomState* rng, std::vector<int64_t>* out) {
  const size_t start = out->size();
  for (int64_t i = begin; i < end; ++i) out->push_back(i);
  rng->shuffle(std::span<int64_t>(out->data() + start, out->size() - start));
}

}  // namespace

absl::StatusOr<GptDataset> GptDataset::build(std::shared_ptr<const SequenceSource> ds, SplitRange range,
                                             const GptDatasetConfig& cfg) {
  CMOE_CHECK(ds != nullptr, "null dataset");
  const std::string& name = ds->name();
  if (cfg.seq_length < 2) {
    return absl::InvalidArgumentError(absl::StrCat("sequence length ", cfg.seq_length, " must be at least 2"));
  }
  if (cfg.num_samples < 1) {
    return absl::InvalidArgumentError(absl::StrCat("number of samples ", cfg.num_samples, " must be at least 1"));
  }
  if (range.begin < 0 || range.end > ds->num_sequences() || range.begin > range.end) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": sequence range [", range.begin, ", ", range.end,
                                                   ") is outside the dataset's ", ds->num_sequences(), " sequences"));
  }
  if (range.end > static_cast<int64_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": more than 2^31 sequences (Megatron's int32 document index)"));
  }
  GptDataset g;
  g.ds_ = std::move(ds);
  g.cfg_ = cfg;
  const SequenceSource& d = *g.ds_;
  const int64_t T = cfg.seq_length;
  int64_t tpe = 0;
  for (int64_t i = range.begin; i < range.end; ++i) tpe += d.sequence_length(i);
  if (tpe < 2) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": the split's sequences [", range.begin, ", ", range.end,
                                                   ") hold ", tpe, " tokens; at least 2 are needed"));
  }
  g.tokens_per_epoch_ = tpe;
  // E = smallest epoch count whose tokens cover N*T + 1.
  int64_t E = 1;
  for (int64_t tokens = tpe; tokens < cfg.num_samples * T + 1; tokens += tpe) ++E;
  g.num_epochs_ = E;

  int64_t samples_sans_final = 0;
  if (E > 1) {
    samples_sans_final = ((E - 1) * tpe - 1) / T;
    const int64_t from_final = cfg.num_samples - samples_sans_final;
    const int64_t per_epoch = (tpe - 1) / T;
    CMOE_CHECK(from_final >= 0 && from_final <= per_epoch + 1, "epoch arithmetic: ", from_final, " of ", per_epoch);
    g.separate_final_epoch_ = from_final < static_cast<int64_t>(0.80 * static_cast<double>(per_epoch));
  }

  NumpyRandomState rng(cfg.seed);
  g.document_index_.reserve(static_cast<size_t>(E * range.size()));
  if (g.separate_final_epoch_) {
    append_document_index(range, E - 1, &rng, &g.document_index_);
    append_document_index(range, 1, &rng, &g.document_index_);
  } else {
    append_document_index(range, E, &rng, &g.document_index_);
  }

  // helpers.cpp build_sample_idx with add_extra_token_to_sequence = 1 and the last partial
  // sequence dropped.
  const int64_t num_samples = (E * tpe - 1) / T;
  const auto& doc_idx = g.document_index_;
  auto& si = g.sample_index_;
  si.resize(static_cast<size_t>(2 * (num_samples + 1)));
  int64_t pos = 0, doc_offset = 0, row = 0;
  si[0] = 0, si[1] = 0;
  ++row;
  while (row <= num_samples) {
    int64_t remaining = T + 1;
    while (remaining != 0) {
      const int64_t doc_length = d.sequence_length(doc_idx[pos]) - doc_offset;
      remaining -= doc_length;
      if (remaining <= 0) {
        doc_offset += remaining + doc_length - 1;
        remaining = 0;
      } else {
        if (pos == static_cast<int64_t>(doc_idx.size()) - 1) {
          CMOE_CHECK(row == num_samples, "sample index ran out of documents at sample ", row, " of ", num_samples);
          doc_offset = d.sequence_length(doc_idx[pos]) - 1;
          break;
        }
        ++pos;
        doc_offset = 0;
      }
    }
    si[2 * row] = pos;
    si[2 * row + 1] = doc_offset;
    ++row;
  }

  g.shuffle_index_.reserve(static_cast<size_t>(num_samples));
  if (g.separate_final_epoch_) {
    append_shuffled_range(0, samples_sans_final, &rng, &g.shuffle_index_);
    append_shuffled_range(samples_sans_final, num_samples, &rng, &g.shuffle_index_);
  } else {
    append_shuffled_range(0, num_samples, &rng, &g.shuffle_index_);
  }
  return g;
}

absl::Status GptDataset::sample_unshuffled(int64_t j, std::span<int32_t> out) const {
  CMOE_CHECK(j >= 0 && j < size(), "sample ", j, " of ", size());
  CMOE_CHECK(static_cast<int64_t>(out.size()) == cfg_.seq_length + 1, "output holds ", out.size(), " tokens");
  const int64_t beg = sample_index_[2 * j], beg_off = sample_index_[2 * j + 1];
  const int64_t end = sample_index_[2 * j + 2], end_off = sample_index_[2 * j + 3];
  int64_t filled = 0;
  for (int64_t i = beg; i <= end; ++i) {
    const int32_t seq = document_index_[i];
    const int64_t offset = i == beg ? beg_off : 0;
    const int64_t length = i < end ? ds_->sequence_length(seq) - offset : end_off + 1 - offset;
    CMOE_CHECK(length >= 0 && filled + length <= static_cast<int64_t>(out.size()), "sample ", j, " overflows");
    CMOE_RETURN_IF_ERROR(ds_->read(seq, offset, length, out.data() + filled));
    filled += length;
  }
  CMOE_CHECK(filled == static_cast<int64_t>(out.size()), "sample ", j, " has ", filled, " tokens");
  return absl::OkStatus();
}

std::string GptDataset::token_location(int64_t k, int64_t p) const {
  CMOE_CHECK(k >= 0 && k < size() && p >= 0 && p <= cfg_.seq_length, "sample ", k, " token ", p);
  const int64_t j = shuffle_index_[k];
  const int64_t beg = sample_index_[2 * j], beg_off = sample_index_[2 * j + 1], end = sample_index_[2 * j + 2];
  // The same walk as sample_unshuffled, stopping at the piece that holds token p.
  for (int64_t i = beg; i <= end; ++i) {
    const int32_t seq = document_index_[i];
    const int64_t offset = i == beg ? beg_off : 0;
    const int64_t length = ds_->sequence_length(seq) - offset;
    if (p < length || i == end) return ds_->token_location(seq, offset + p);
    p -= length;
  }
  CMOE_CHECK(false, "sample ", k, ": no piece holds the token");
  return {};
}

absl::Status GptDataset::sample(int64_t k, std::span<int32_t> out) const {
  CMOE_CHECK(k >= 0 && k < size(), "sample ", k, " of ", size());
  return sample_unshuffled(shuffle_index_[k], out);
}

}  // namespace cmoe::data
