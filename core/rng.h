// rng.h — counter-based random numbers (Philox-4x32-10, Salmon et al., SC'11).
//
// Every value is a pure function of (seed, stream, offset): element `offset` of stream
// `stream` under `seed`. Nothing is stateful, so a parameter's initial value depends only on
// its stream id and its index in the *global* tensor — never on which rank owns it or how many
// ranks there are — and a CUDA kernel computing the same formula gives the same bits.
//
// Layout: key = seed (64 bits), counter = (offset / 4 as u64, stream as u64); the four u32
// outputs of one Philox block are elements 4c .. 4c+3.
#pragma once

#include <array>
#include <cstdint>

#include "core/tensor.h"

namespace cmoe {

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

// The u32 at (seed, stream, offset).
uint32_t rng_u32(uint64_t seed, uint64_t stream, uint64_t offset);
// Uniform in the open interval (0, 1) with 24 random bits.
float rng_uniform(uint64_t seed, uint64_t stream, uint64_t offset);
// Standard normal via Box–Muller on the pair (2j, 2j+1) of a block: even offsets take the
// cosine branch, odd ones the sine branch of the same pair.
float rng_normal(uint64_t seed, uint64_t stream, uint64_t offset);

// Fills an f32 CPU tensor: out[i] = mean + std * normal(seed, stream, first_offset + i).
void rng_fill_normal(Tensor& out, float mean, float std, uint64_t seed, uint64_t stream,
                     uint64_t first_offset = 0);
// out[i] = lo + (hi - lo) * uniform(seed, stream, first_offset + i).
void rng_fill_uniform(Tensor& out, float lo, float hi, uint64_t seed, uint64_t stream,
                      uint64_t first_offset = 0);

// Stable 64-bit id for a named stream ("layers.3.attn.wq"), so streams are chosen by name.
uint64_t rng_stream_id(std::string_view name);

}  // namespace cmoe
