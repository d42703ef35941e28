// sequence_source.cpp — which format a data path names, and opening it (see sequence_source.h).
#include "data/sequence_source.h"

#include <sys/stat.h>

#include "core/check.h"
#include "data/indexed_dataset.h"
#include "data/llmc_dataset.h"

namespace cmoe::data {

bool is_llmc_path(const std::string& path) {
  if (path.find_first_of("*?[") != std::string::npos) return true;
  struct stat st;
  return path.size() > 4 && path.ends_with(".bin") && ::stat((path + ".idx").c_str(), &st) != 0;
}

absl::StatusOr<std::shared_ptr<const SequenceSource>> open_sequence_source(const std::string& path) {
  if (is_llmc_path(path)) {
    CMOE_ASSIGN_OR_RETURN(LlmcDataset ds, LlmcDataset::open(path));
    return std::shared_ptr<const SequenceSource>(std::make_shared<const LlmcDataset>(std::move(ds)));
  }
  CMOE_ASSIGN_OR_RETURN(IndexedDataset ds, IndexedDataset::open(path));
  return std::shared_ptr<const SequenceSource>(std::make_shared<const IndexedDataset>(std::move(ds)));
}

}  // namespace cmoe::data
