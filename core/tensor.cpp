// tensor.cpp — Shape and Tensor basics (allocation, views, copies, conversions).
#include "core/tensor.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/cpu/kernels.h"

namespace cmoe {

Shape::Shape(std::initializer_list<int64_t> dims) : Shape(std::span<const int64_t>(dims.begin(), dims.size())) {}

Shape::Shape(std::span<const int64_t> dims) {
  CMOE_CHECK(dims.size() <= static_cast<size_t>(kMaxRank), "rank ", dims.size(), " > ", kMaxRank);
  rank_ = static_cast<int>(dims.size());
  for (int i = 0; i < rank_; ++i) {
    CMOE_CHECK(dims[i] >= 0, "negative dimension ", dims[i]);
    dims_[i] = dims[i];
  }
}

int64_t Shape::operator[](int i) const {
  CMOE_CHECK(i >= 0 && i < rank_, "dim ", i, " of rank-", rank_, " shape");
  return dims_[i];
}

int64_t& Shape::operator[](int i) {
  CMOE_CHECK(i >= 0 && i < rank_, "dim ", i, " of rank-", rank_, " shape");
  return dims_[i];
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= dims_[i];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (rank_ != o.rank_) return false;
  for (int i = 0; i < rank_; ++i)
    if (dims_[i] != o.dims_[i]) return false;
  return true;
}

std::string Shape::str() const { return absl::StrCat("(", absl::StrJoin(dims(), ", "), ")"); }

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>(static_cast<size_t>(shape.numel()) * dtype_size(dtype), device);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero_();
  return t;
}

Tensor Tensor::full(const Shape& shape, float value, Device device) {
  Tensor t = empty(shape, DType::kF32, kCPU);
  t.fill_(value);
  return device.is_cpu() ? t : t.to(device);
}

Tensor Tensor::from_floats(const Shape& shape, std::span<const float> values) {
  CMOE_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), values.size(),
             " values for shape ", shape.str());
  Tensor t = empty(shape, DType::kF32);
  std::memcpy(t.raw_data(), values.data(), values.size_bytes());
  return t;
}

Tensor Tensor::from_ints(const Shape& shape, std::span<const int32_t> values) {
  CMOE_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), values.size(),
             " values for shape ", shape.str());
  Tensor t = empty(shape, DType::kI32);
  std::memcpy(t.raw_data(), values.data(), values.size_bytes());
  return t;
}

int64_t Tensor::rows() const { return shape_.rank() == 0 ? 1 : numel() / shape_[shape_.rank() - 1]; }
int64_t Tensor::cols() const { return shape_.rank() == 0 ? 1 : shape_[shape_.rank() - 1]; }

void* Tensor::raw_data() const {
  CMOE_CHECK(defined(), "access to an undefined tensor");
  return static_cast<char*>(storage_->data()) + offset_;
}

Tensor Tensor::view(const Shape& shape) const {
  CMOE_CHECK(shape.numel() == numel(), "view ", shape.str(), " of ", shape_.str());
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::slice0(int64_t begin, int64_t end) const {
  CMOE_CHECK(rank() >= 1 && 0 <= begin && begin <= end && end <= shape_[0], "slice0 [", begin, ", ",
             end, ") of ", shape_.str());
  Tensor t = *this;
  int64_t inner = shape_[0] == 0 ? 0 : numel() / shape_[0];
  t.offset_ += static_cast<size_t>(begin * inner) * dtype_size(dtype_);
  t.shape_[0] = end - begin;
  return t;
}

Tensor Tensor::operator[](int64_t i) const {
  Tensor t = slice0(i, i + 1);
  std::vector<int64_t> dims(shape_.dims().begin() + 1, shape_.dims().end());
  t.shape_ = Shape(std::span<const int64_t>(dims));
  return t;
}

Tensor Tensor::clone() const { return to(device()); }

Tensor Tensor::to(Device device) const {
  Tensor t = empty(shape_, dtype_, device);
  copy_bytes(t.raw_data(), device, raw_data(), this->device(), nbytes());
  return t;
}

Tensor Tensor::to_dtype(DType dtype) const {
  CMOE_CHECK(device().is_cpu(), "to_dtype runs on CPU tensors");
  if (dtype == dtype_) return clone();
  Tensor t = empty(shape_, dtype);
  int64_t n = numel();
  if (dtype_ == DType::kF32 && dtype == DType::kBF16) {
    cpu::f32_to_bf16(t.data<bf16>(), data<float>(), n);
  } else if (dtype_ == DType::kBF16 && dtype == DType::kF32) {
    cpu::bf16_to_f32(t.data<float>(), data<bf16>(), n);
  } else {
    auto load = [&](int64_t i) -> double {
      switch (dtype_) {
        case DType::kF32: return data<float>()[i];
        case DType::kBF16: return bf16_to_f32(data<bf16>()[i]);
        case DType::kI32: return data<int32_t>()[i];
        case DType::kI64: return static_cast<double>(data<int64_t>()[i]);
        case DType::kU16: return data<uint16_t>()[i];
      }
      return 0;
    };
    for (int64_t i = 0; i < n; ++i) {
      double v = load(i);
      switch (dtype) {
        case DType::kF32: t.data<float>()[i] = static_cast<float>(v); break;
        case DType::kBF16: t.data<bf16>()[i] = f32_to_bf16(static_cast<float>(v)); break;
        case DType::kI32: t.data<int32_t>()[i] = static_cast<int32_t>(v); break;
        case DType::kI64: t.data<int64_t>()[i] = static_cast<int64_t>(v); break;
        case DType::kU16: t.data<uint16_t>()[i] = static_cast<uint16_t>(v); break;
      }
    }
  }
  return t;
}

void Tensor::zero_() {
  if (device().is_cpu()) {
    std::memset(raw_data(), 0, nbytes());
  } else {
    set_bytes(raw_data(), device(), 0, nbytes());
  }
}

void Tensor::fill_(float value) {
  CMOE_CHECK(dtype_ == DType::kF32 && device().is_cpu(), "fill_ needs a CPU f32 tensor, got ", str());
  float* p = data<float>();
  for (int64_t i = 0, n = numel(); i < n; ++i) p[i] = value;
}

void Tensor::copy_from(const Tensor& src) {
  CMOE_CHECK(src.numel() == numel() && src.dtype() == dtype_, "copy_from ", src.str(), " into ", str());
  copy_bytes(raw_data(), device(), src.raw_data(), src.device(), nbytes());
}

std::vector<float> Tensor::to_floats() const {
  Tensor host = device().is_cpu() ? *this : to(kCPU);
  std::vector<float> out(static_cast<size_t>(numel()));
  if (dtype_ == DType::kF32) {
    std::memcpy(out.data(), host.raw_data(), nbytes());
  } else {
    Tensor f = host.to_dtype(DType::kF32);
    std::memcpy(out.data(), f.raw_data(), f.nbytes());
  }
  return out;
}

std::string Tensor::str() const {
  if (!defined()) return "undefined";
  return absl::StrCat(dtype_name(dtype_), shape_.str(), " ", device().str());
}

}  // namespace cmoe
