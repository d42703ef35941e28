// plugin_loader.cpp — the CUDA plugin's path, dlopen and ABI checks (see plugin_loader.h).
#include "core/cuda/plugin_loader.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/check.h"

namespace cmoe::cuda {

namespace {

// dlerror's text for the last failure, or `fallback`.
std::string dl_error(const char* fallback) {
  const char* e = dlerror();
  return e != nullptr ? std::string(e) : std::string(fallback);
}

// "which entry is null", or "" when the table is complete.
std::string first_null_entry(const CmoeCudaApi& api) {
#define CMOE_CUDA_NULL_CHECK_(ret, name, params) \
  if (api.name == nullptr) return #name;
  CMOE_CUDA_API_ENTRIES(CMOE_CUDA_NULL_CHECK_)
#undef CMOE_CUDA_NULL_CHECK_
  return "";
}

}  // namespace

std::string plugin_path() {
  if (const char* env = std::getenv(kPluginPathEnv); env != nullptr && *env != '\0') return env;
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return kPluginFileName;  // no /proc: let dlopen search the usual places
  // build/bin/cmoe -> build/lib/libcmoe_cuda.so
  const std::filesystem::path exe(std::string(buf, static_cast<size_t>(n)));
  return (exe.parent_path().parent_path() / "lib" / kPluginFileName).string();
}

absl::StatusOr<const CmoeCudaApi*> plugin_open(const std::string& path) {
  (void)dlerror();  // clear a stale error
  // Lazy binding: resolving every symbol of cuBLAS/cuBLASLt up front would add tens of
  // milliseconds; the plugin is linked with -z defs, so each symbol it uses exists in the
  // libraries named by its DT_NEEDED entries (a missing library still fails here).
  void* handle = dlopen(path.c_str(), RTLD_LAZY | RTLD_LOCAL);
  if (handle == nullptr) {
    // dlerror names the file it could not open: the plugin itself, or a library it needs.
    std::string why = dl_error("dlopen failed");
    if (why.rfind(path, 0) == 0) return absl::UnavailableError(why);
    return absl::UnavailableError(absl::StrCat(path, ": ", why));
  }
  // From here on, a failure closes the handle again: the file is not our backend.
  auto refuse = [&](std::string why) {
    dlclose(handle);
    return absl::FailedPreconditionError(absl::StrCat(path, ": ", why));
  };
  void* sym = dlsym(handle, kCudaPluginEntry);
  if (sym == nullptr) {
    return refuse(absl::StrCat("not a cmoe CUDA backend (", dl_error("symbol not found"), ")"));
  }
  const CmoeCudaApi* api = reinterpret_cast<CmoeCudaApiFn>(sym)();
  if (api == nullptr) return refuse(absl::StrCat(kCudaPluginEntry, "() returned no table"));
  const uint64_t want_signature = cmoe_cuda_api_signature();
  if (api->abi_version != CMOE_CUDA_ABI_VERSION || api->struct_size != sizeof(CmoeCudaApi) ||
      api->signature != want_signature) {
    return refuse(absl::StrFormat(
        "CUDA backend ABI version %u (table of %u bytes, signature %016x), but this cmoe needs "
        "version %u (%u bytes, signature %016x): the plugin comes from another build; rebuild "
        "it, or point %s at this build's lib/%s",
        api->abi_version, api->struct_size, api->signature, CMOE_CUDA_ABI_VERSION,
        static_cast<uint32_t>(sizeof(CmoeCudaApi)), want_signature, kPluginPathEnv,
        kPluginFileName));
  }
  if (std::string missing = first_null_entry(*api); !missing.empty()) {
    return refuse(absl::StrCat("CUDA backend table has no '", missing, "' entry"));
  }
  return api;  // the handle stays open for the life of the process
}

absl::StatusOr<const CmoeCudaApi*> plugin_api() {
  static std::once_flag once;
  static absl::StatusOr<const CmoeCudaApi*>* loaded = nullptr;  // never destroyed
  std::call_once(once, [] {
    const char* env = std::getenv(kPluginPathEnv);
    const bool explicit_path = env != nullptr && *env != '\0';
#ifndef CMOE_CUDA_PLUGIN_BUILT
    if (!explicit_path) {
      loaded = new absl::StatusOr<const CmoeCudaApi*>(absl::UnimplementedError(
          "the CUDA backend was not built (nvcc was not found at configure time)"));
      return;
    }
#endif
    const std::string path = plugin_path();
    absl::StatusOr<const CmoeCudaApi*> api = plugin_open(path);
    if (!api.ok() && !explicit_path && access(path.c_str(), F_OK) != 0) {
      api = absl::Status(api.status().code(),
                         absl::StrCat(api.status().message(), " (set ", kPluginPathEnv,
                                      " to load the CUDA backend from elsewhere)"));
    }
    loaded = new absl::StatusOr<const CmoeCudaApi*>(std::move(api));
  });
  return *loaded;
}

const CmoeCudaApi& loaded_api() {
  absl::StatusOr<const CmoeCudaApi*> api = plugin_api();
  CMOE_CHECK(api.ok(), "the CUDA backend is used before it was loaded: ", api.status().message());
  return **api;
}

absl::Status plugin_status(const CmoeCudaApi& api, int32_t code) {
  if (code == CMOE_CUDA_OK) return absl::OkStatus();
  absl::StatusCode c = absl::StatusCode::kInternal;
  switch (code) {
    case CMOE_CUDA_INVALID_ARGUMENT: c = absl::StatusCode::kInvalidArgument; break;
    case CMOE_CUDA_RESOURCE_EXHAUSTED: c = absl::StatusCode::kResourceExhausted; break;
    case CMOE_CUDA_UNAVAILABLE: c = absl::StatusCode::kUnavailable; break;
    default: break;
  }
  const char* text = api.last_error();
  return absl::Status(c, text != nullptr && *text != '\0'
                             ? std::string(text)
                             : absl::StrCat("CUDA backend call failed with code ", code));
}

void plugin_check(const CmoeCudaApi& api, int32_t code, const char* what) {
  if (code == CMOE_CUDA_OK) return;
  const absl::Status st = plugin_status(api, code);
  CMOE_CHECK(false, what, ": ", st.message());
}

}  // namespace cmoe::cuda
