// plugin_loader_test.cpp — the CUDA plugin loader's paths, run on the CPU with fake plugins
// (fake_plugin.cpp): a missing file, a missing library the plugin needs, a file without the
// entry symbol, a table of another ABI version, a table with a null entry, and a complete fake
// that loads. Each error must name the file tried and say why. The process-wide, cached load
// (plugin_api) and what `cmoe info` and a CUDA tensor report are checked in child processes
// (gtest death tests), one CMOE_CUDA_PLUGIN setting each.
#include "core/cuda/plugin_loader.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/cuda/cuda_backend.h"
#include "core/tensor.h"
#include "gtest/gtest.h"

namespace cmoe::cuda {
namespace {

std::string fake(const char* mode) {
  return std::string(CMOE_FAKE_PLUGIN_DIR) + "/libfake_cuda_plugin_" + mode + ".so";
}

bool contains(const absl::Status& st, const std::string& part) {
  return std::string(st.message()).find(part) != std::string::npos;
}

TEST(CudaPluginLoader, MissingFileNamesThePath) {
  const std::string path = "/nonexistent-dir/libcmoe_cuda.so";
  absl::StatusOr<const CmoeCudaApi*> api = plugin_open(path);
  ASSERT_FALSE(api.ok());
  EXPECT_EQ(api.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(contains(api.status(), path + ": cannot open shared object file")) << api.status();
}

TEST(CudaPluginLoader, MissingLibraryIsNamed) {
  const std::string path = fake("missing_dep");
  absl::StatusOr<const CmoeCudaApi*> api = plugin_open(path);
  ASSERT_FALSE(api.ok());
  EXPECT_EQ(api.status().code(), absl::StatusCode::kUnavailable);
  // "<plugin>: libcmoe_fake_dep.so: cannot open shared object file: ...", as for libcudart.
  EXPECT_TRUE(
      contains(api.status(), path + ": libcmoe_fake_dep.so: cannot open shared object file"))
      << api.status();
}

TEST(CudaPluginLoader, FileWithoutTheEntryIsRefused) {
  const std::string path = fake("no_entry");
  absl::StatusOr<const CmoeCudaApi*> api = plugin_open(path);
  ASSERT_FALSE(api.ok());
  EXPECT_EQ(api.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(api.status(), path + ": not a cmoe CUDA backend")) << api.status();
  EXPECT_TRUE(contains(api.status(), kCudaPluginEntry)) << api.status();
}

TEST(CudaPluginLoader, OtherAbiVersionIsRefused) {
  const std::string path = fake("old_abi");
  absl::StatusOr<const CmoeCudaApi*> api = plugin_open(path);
  ASSERT_FALSE(api.ok());
  EXPECT_EQ(api.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(
      api.status(), absl::StrCat(path, ": CUDA backend ABI version ", CMOE_CUDA_ABI_VERSION + 1)))
      << api.status();
  EXPECT_TRUE(contains(api.status(), absl::StrCat("needs version ", CMOE_CUDA_ABI_VERSION)))
      << api.status();
  EXPECT_TRUE(contains(api.status(), "CMOE_CUDA_PLUGIN")) << api.status();
}

TEST(CudaPluginLoader, NullEntryIsNamed) {
  absl::StatusOr<const CmoeCudaApi*> api = plugin_open(fake("null_entry"));
  ASSERT_FALSE(api.ok());
  EXPECT_EQ(api.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(api.status(), "CUDA backend table has no 'last_error' entry"))
      << api.status();
}

TEST(CudaPluginLoader, CompleteTableLoadsAndErrorsCarryItsSentence) {
  absl::StatusOr<const CmoeCudaApi*> api = plugin_open(fake("complete"));
  ASSERT_TRUE(api.ok()) << api.status();
  EXPECT_EQ((*api)->has_nccl, 0);
  int32_t n = -1;
  const int32_t code = (*api)->device_count(&n);
  EXPECT_EQ(n, 0);
  const absl::Status st = plugin_status(**api, code);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(st.message(), "fake backend: cudaGetDeviceCount reports 0 devices");
  EXPECT_TRUE(plugin_status(**api, CMOE_CUDA_OK).ok());
  // Opening the same file again yields the same table (dlopen reference-counts it).
  absl::StatusOr<const CmoeCudaApi*> again = plugin_open(fake("complete"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *api);
}

TEST(CudaPluginLoader, PathFollowsEnvironmentThenExecutable) {
  char exe[4096];
  const ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  ASSERT_GT(len, 0);
  std::string dir(exe, static_cast<size_t>(len));
  dir.resize(dir.rfind('/'));  // .../bin
  dir.resize(dir.rfind('/'));  // ...
  const std::string beside = dir + "/lib/libcmoe_cuda.so";
  ASSERT_EQ(unsetenv(kPluginPathEnv), 0);
  EXPECT_EQ(plugin_path(), beside);
  ASSERT_EQ(setenv(kPluginPathEnv, "", 1), 0);  // empty: as if unset
  EXPECT_EQ(plugin_path(), beside);
  ASSERT_EQ(setenv(kPluginPathEnv, "/opt/x/libcmoe_cuda.so", 1), 0);
  EXPECT_EQ(plugin_path(), "/opt/x/libcmoe_cuda.so");
  ASSERT_EQ(unsetenv(kPluginPathEnv), 0);
}

// The process-wide load, in a child per setting (plugin_api keeps its first outcome).
void describe_with(const std::string& plugin) {
  setenv(kPluginPathEnv, plugin.c_str(), 1);
  std::fprintf(stderr, "cuda: %s\n", describe_backend().c_str());
  std::exit(0);
}

TEST(CudaPluginLoaderDeathTest, InfoLineSaysWhyThereIsNoGpu) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(describe_with(fake("complete")), testing::ExitedWithCode(0),
              "cuda: no GPU usable \\(fake backend: cudaGetDeviceCount reports 0 devices\\)");
  EXPECT_EXIT(describe_with(fake("missing_dep")), testing::ExitedWithCode(0),
              "cuda: not available \\(.*libfake_cuda_plugin_missing_dep.so: "
              "libcmoe_fake_dep.so: cannot open shared object file");
}

TEST(CudaPluginLoaderDeathTest, CudaTensorWithoutBackendNamesTheReason) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        setenv(kPluginPathEnv, fake("missing_dep").c_str(), 1);
        Tensor t = Tensor::empty({4}, DType::kF32, cuda_device(0));
      },
      "a CUDA tensor needs the CUDA backend, which is unavailable: .*libcmoe_fake_dep.so");
  EXPECT_DEATH(
      {
        setenv(kPluginPathEnv, fake("complete").c_str(), 1);
        Tensor t = Tensor::zeros({4}, DType::kF32).to(cuda_device(0));
      },
      "needs the CUDA backend, which is unavailable: fake backend: cudaGetDeviceCount reports 0 "
      "devices");
}

}  // namespace
}  // namespace cmoe::cuda
