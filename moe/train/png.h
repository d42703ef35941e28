// png.h — a minimal PNG encoder (8-bit RGB, no interlace) for the images cmoe writes into
// TensorBoard event files (the A x B co-usage heatmaps), and the colour map they use.
//
// File layout (PNG 1.2, all integers big-endian): the 8-byte signature 89 50 4E 47 0D 0A 1A 0A,
// then chunks of (length u32, type 4 bytes, data, CRC-32 of type + data): IHDR (width u32,
// height u32, bit depth 8, colour type 2 = RGB, compression 0, filter 0, interlace 0), one
// IDAT holding the zlib stream of the scanlines (each: filter byte 0, then width * 3 bytes),
// IEND.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace cmoe {

// rgb: (height, width, 3) bytes, row-major. Returns the PNG file's bytes.
std::string png_encode_rgb(int width, int height, const std::vector<uint8_t>& rgb);

// A perceptually ordered colour map (viridis-like, dark purple -> yellow) of 64 levels whose
// luminance never decreases with t (and rises from level to level); t in [0, 1] (clamped).
std::array<uint8_t, 3> colormap_rgb(double t);

// A heatmap of a (rows, cols) matrix: cell (i, j) is a cell x cell square of colour
// colormap_rgb(values[i * cols + j] / max(values)) (all dark when every value is 0), so row i
// is image rows [i * cell, (i + 1) * cell). Returns the PNG's bytes; width and height receive
// cols * cell and rows * cell.
std::string png_heatmap(const std::vector<int64_t>& values, int rows, int cols, int cell, int* width, int* height);

}  // namespace cmoe
