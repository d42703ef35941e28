// entries.h — declarations of the plugin's api_<name> functions, one per line of
// CMOE_CUDA_API_ENTRIES (core/cuda/cuda_api.h), so every definition must match the ABI exactly:
// a definition with other parameters leaves the declared one undefined and the link fails.
#pragma once

#include "core/cuda/cuda_api.h"

namespace cmoe::cuda_plugin {

#define CMOE_CUDA_PLUGIN_DECLARE_(ret, name, params) ret api_##name params;
CMOE_CUDA_API_ENTRIES(CMOE_CUDA_PLUGIN_DECLARE_)
#undef CMOE_CUDA_PLUGIN_DECLARE_

}  // namespace cmoe::cuda_plugin
