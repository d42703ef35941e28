// crc32c.h — CRC-32C (Castagnoli, polynomial 0x1EDC6F41 reflected 0x82F63B78), the checksum
// of every tensor in a checkpoint. Uses the SSE4.2 crc32 instruction where present.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cmoe {

// Extends `crc` (0 for a fresh checksum) over data[0, n).
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n);
inline uint32_t crc32c(const void* data, size_t n) { return crc32c_extend(0, data, n); }

}  // namespace cmoe
