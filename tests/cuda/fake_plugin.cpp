// fake_plugin.cpp — stand-ins for libcmoe_cuda.so that exercise the loader's checks without
// CUDA (tests/cuda/plugin_loader_test.cpp). One source, one module per FAKE_PLUGIN_MODE:
//   complete     a table the loader accepts: device_count reports "no devices" (UNAVAILABLE)
//                with its sentence; every other entry aborts if called (never, in the test)
//   old_abi      the right shape but ABI version CMOE_CUDA_ABI_VERSION + 1
//   null_entry   the right header but every entry null
//   no_entry     no cmoe_cuda_plugin_api symbol at all
//   missing_dep  a complete table, but linked against a library the loader cannot find
#include <cstdio>
#include <cstdlib>

#include "core/cuda/cuda_api.h"

#define FAKE_COMPLETE 1
#define FAKE_OLD_ABI 2
#define FAKE_NULL_ENTRY 3
#define FAKE_NO_ENTRY 4
#define FAKE_MISSING_DEP 5

#if FAKE_PLUGIN_MODE == FAKE_MISSING_DEP
extern "C" int cmoe_fake_dep_answer();  // in libcmoe_fake_dep.so, kept off the search path
#endif

namespace {

thread_local const char* t_error = "";

[[maybe_unused]] const char* fake_last_error() { return t_error; }

[[maybe_unused]] int32_t fake_device_count(int32_t* count) {
  *count = 0;
#if FAKE_PLUGIN_MODE == FAKE_MISSING_DEP
  if (cmoe_fake_dep_answer() != 42) std::abort();
#endif
  t_error = "fake backend: cudaGetDeviceCount reports 0 devices";
  return CMOE_CUDA_UNAVAILABLE;
}

[[maybe_unused, noreturn]] void fake_unreachable() {
  std::fputs("fake CUDA plugin: an entry the test never calls was called\n", stderr);
  std::abort();
}

#if FAKE_PLUGIN_MODE != FAKE_NO_ENTRY
CmoeCudaApi make_table() {
  CmoeCudaApi api{};
  api.abi_version = CMOE_CUDA_ABI_VERSION;
  api.struct_size = sizeof(CmoeCudaApi);
  api.signature = cmoe_cuda_api_signature();
#if FAKE_PLUGIN_MODE == FAKE_OLD_ABI
  api.abi_version = CMOE_CUDA_ABI_VERSION + 1;
#endif
#if FAKE_PLUGIN_MODE != FAKE_NULL_ENTRY
  // Stored, never called with these types (calling one would be undefined; it aborts instead).
#define FAKE_FILL_(ret, name, params) api.name = reinterpret_cast<ret(*) params>(&fake_unreachable);
  CMOE_CUDA_API_ENTRIES(FAKE_FILL_)
#undef FAKE_FILL_
  api.last_error = &fake_last_error;
  api.device_count = &fake_device_count;
#endif
  return api;
}
#endif

}  // namespace

#if FAKE_PLUGIN_MODE == FAKE_NO_ENTRY
extern "C" __attribute__((visibility("default"))) int cmoe_cuda_plugin_something_else() {
  return 0;
}
#else
extern "C" __attribute__((visibility("default"))) const CmoeCudaApi* cmoe_cuda_plugin_api() {
  static const CmoeCudaApi api = make_table();
  return &api;
}
#endif
