// tensor.h — cmoe's tensor: a contiguous row-major view into a device allocation.
//
// Aliasing, stated once: copying a Tensor (copy constructor, assignment, passing by value) and
// every view (view(), rows(), operator[] on dim 0) ALIAS the same storage — writes through one
// are seen by all. Only clone(), to(), to_dtype() and the factory functions allocate new
// storage. A default-constructed Tensor is undefined (defined() == false).
//
// Tensors are always contiguous; a view is a (storage, byte offset, shape) triple, so slicing
// along the first dimension is free and slicing along any other needs a copy.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/check.h"
#include "core/dtype.h"

namespace cmoe {

inline constexpr int kMaxRank = 6;

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(std::span<const int64_t> dims);

  int rank() const { return rank_; }
  int64_t operator[](int i) const;
  int64_t& operator[](int i);
  int64_t numel() const;
  bool operator==(const Shape& o) const;
  std::string str() const;  // "(2, 3, 4)"
  std::span<const int64_t> dims() const { return {dims_, static_cast<size_t>(rank_)}; }

 private:
  int64_t dims_[kMaxRank] = {};
  int rank_ = 0;
};

class Tensor {
 public:
  Tensor() = default;

  // Factories allocate fresh storage.
  static Tensor empty(const Shape& shape, DType dtype, Device device = kCPU);
  static Tensor zeros(const Shape& shape, DType dtype, Device device = kCPU);
  static Tensor full(const Shape& shape, float value, Device device = kCPU);  // f32
  static Tensor from_floats(const Shape& shape, std::span<const float> values);
  static Tensor from_ints(const Shape& shape, std::span<const int32_t> values);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  int64_t dim(int i) const { return shape_[i < 0 ? i + shape_.rank() : i]; }
  int64_t numel() const { return shape_.numel(); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : kCPU; }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  // Rows = product of all dims but the last; cols = last dim (1 for rank 0).
  int64_t rows() const;
  int64_t cols() const;

  void* raw_data() const;
  template <typename T>
  T* data() const {
    CMOE_CHECK(DTypeOf<T>::value == dtype_, "tensor is ", dtype_name(dtype_), ", accessed as ",
               dtype_name(DTypeOf<T>::value));
    return static_cast<T*>(raw_data());
  }

  // Views (alias).
  Tensor view(const Shape& shape) const;          // same numel
  Tensor slice0(int64_t begin, int64_t end) const;  // rows [begin, end) of dim 0
  Tensor operator[](int64_t i) const;             // dim-0 element, rank drops by one

  // Copies (fresh storage).
  Tensor clone() const;
  Tensor to(Device device) const;
  Tensor to_dtype(DType dtype) const;  // CPU only: f32 <-> bf16, integer <-> integer/f32

  // In-place (CPU or CUDA through the registered backend where noted).
  void zero_();                         // any device
  void fill_(float value);              // f32, CPU
  void copy_from(const Tensor& src);    // same numel and dtype, any devices

  std::vector<float> to_floats() const;  // f32/bf16 -> host floats (copies)
  std::string str() const;               // "f32(2, 3) cpu"
  bool same_storage(const Tensor& o) const { return storage_ == o.storage_; }

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;  // bytes
  Shape shape_;
  DType dtype_ = DType::kF32;
};

}  // namespace cmoe
