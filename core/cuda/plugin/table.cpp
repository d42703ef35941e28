// table.cpp — the plugin's one exported symbol: the CmoeCudaApi table (core/cuda/cuda_api.h),
// filled from the same entry list the struct is declared from.
#include "core/cuda/plugin/entries.h"

namespace {

// clang-format off
const CmoeCudaApi kApi = {
    .abi_version = CMOE_CUDA_ABI_VERSION,
    .struct_size = sizeof(CmoeCudaApi),
    .signature = cmoe_cuda_api_signature(),
#ifdef CMOE_PLUGIN_HAVE_NCCL
    .has_nccl = 1,
#else
    .has_nccl = 0,
#endif
    .reserved = 0,
#define CMOE_CUDA_PLUGIN_FILL_(ret, name, params) .name = &cmoe::cuda_plugin::api_##name,
    CMOE_CUDA_API_ENTRIES(CMOE_CUDA_PLUGIN_FILL_)
#undef CMOE_CUDA_PLUGIN_FILL_
};
// clang-format on

}  // namespace

extern "C" __attribute__((visibility("default"))) const CmoeCudaApi* cmoe_cuda_plugin_api() {
  return &kApi;
}
