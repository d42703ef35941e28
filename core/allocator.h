// allocator.h — devices and the allocator interface tensors draw their storage from.
//
// Each device type has one registered Allocator. The CPU allocator (64-byte aligned, so AVX-512
// loads never split cache lines) is built in; the CUDA backend registers its caching allocator
// in cuda::init, or when the first CUDA tensor is asked for (loading the CUDA plugin then).
// Storage owns one allocation and returns it to the allocator that made it.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace cmoe {

enum class DeviceType : uint8_t { kCPU = 0, kCUDA = 1 };

struct Device {
  DeviceType type = DeviceType::kCPU;
  int index = 0;
  bool operator==(const Device&) const = default;
  bool is_cpu() const { return type == DeviceType::kCPU; }
  bool is_cuda() const { return type == DeviceType::kCUDA; }
  std::string str() const;
};

inline constexpr Device kCPU{DeviceType::kCPU, 0};
inline Device cuda_device(int index = 0) { return Device{DeviceType::kCUDA, index}; }

class Allocator {
 public:
  virtual ~Allocator() = default;
  // Returns at least `bytes` bytes on `device`; never nullptr (out of memory is fatal with a
  // message naming the request and the device's usage).
  virtual void* allocate(size_t bytes, Device device) = 0;
  virtual void deallocate(void* ptr, size_t bytes, Device device) = 0;
  // Bytes currently handed out, and the high-water mark since the last reset.
  virtual size_t bytes_in_use() const = 0;
  virtual size_t peak_bytes() const = 0;
  virtual void reset_peak() = 0;
};

// The allocator for a device type. The first request for kCUDA loads the CUDA backend; it aborts
// with the reason when there is none (a build without CUDA, a machine without a GPU).
Allocator& allocator_for(DeviceType type);
void register_allocator(DeviceType type, Allocator* allocator);
bool has_allocator(DeviceType type);

// Copies `bytes` between any two devices (host<->device copies are synchronous).
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);

// Hook the CUDA backend installs for device copies; nullptr when no CUDA backend is active.
using DeviceCopyFn = void (*)(void* dst, Device dst_device, const void* src, Device src_device,
                              size_t bytes);
void register_device_copy(DeviceCopyFn fn);

// Sets `bytes` bytes at dst on `device` to `byte` (a device memset, ordered on the device's
// compute stream like its kernels).
void set_bytes(void* dst, Device device, int byte, size_t bytes);
using DeviceMemsetFn = void (*)(void* dst, Device device, int byte, size_t bytes);
void register_device_memset(DeviceMemsetFn fn);

// Storage: one allocation, freed by its allocator when the last Tensor referring to it goes.
class Storage {
 public:
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
  Allocator* allocator_ = nullptr;
};

}  // namespace cmoe
