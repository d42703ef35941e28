// png.cpp — PNG encoding and the heatmap colour map (see png.h).
#include "moe/train/png.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace cmoe {

namespace {

void put_u32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xff));
}

// length, type, data, CRC-32 (zlib's, the PNG polynomial) over type + data.
void put_chunk(std::string& out, const char type[4], const std::string& data) {
  put_u32(out, static_cast<uint32_t>(data.size()));
  const size_t at = out.size();
  out.append(type, 4);
  out += data;
  const uLong crc = crc32(0L, reinterpret_cast<const Bytef*>(out.data() + at), static_cast<uInt>(4 + data.size()));
  put_u32(out, static_cast<uint32_t>(crc));
}

}  // namespace

std::string png_encode_rgb(int width, int height, const std::vector<uint8_t>& rgb) {
  CMOE_CHECK(width > 0 && height > 0 && rgb.size() == static_cast<size_t>(width) * height * 3, "png: ", width, " x ",
             height, " image with ", rgb.size(), " bytes");
  // Scanlines with filter type 0 (None) each.
  const size_t row = static_cast<size_t>(width) * 3;
  std::vector<uint8_t> raw(static_cast<size_t>(height) * (row + 1));
  for (int y = 0; y < height; ++y) {
    raw[y * (row + 1)] = 0;
    std::copy_n(rgb.data() + y * row, row, raw.data() + y * (row + 1) + 1);
  }
  uLongf zlen = compressBound(static_cast<uLong>(raw.size()));
  std::string z(zlen, '\0');
  const int rc = compress2(reinterpret_cast<Bytef*>(z.data()), &zlen, raw.data(), static_cast<uLong>(raw.size()), 6);
  CMOE_CHECK(rc == Z_OK, "png: zlib compress2 failed with code ", rc);
  z.resize(zlen);

  std::string out("\x89PNG\r\n\x1a\n", 8);
  std::string ihdr;
  put_u32(ihdr, static_cast<uint32_t>(width));
  put_u32(ihdr, static_cast<uint32_t>(height));
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // depth 8, RGB, deflate, filter 0, no interlace
  put_chunk(out, "IHDR", ihdr);
  put_chunk(out, "IDAT", z);
  put_chunk(out, "IEND", "");
  return out;
}

std::array<uint8_t, 3> colormap_rgb(double t) {
  // Anchors of viridis at t = 0, 1/4, 1/2, 3/4, 1; luminance (0.299 R + 0.587 G + 0.114 B)
  // rises from anchor to anchor, and linear interpolation keeps it rising in between. t is
  // quantised to kLevels levels first: a level's luminance is at least 3 above the previous
  // one's, more than rounding each channel to a byte can take away (at most 0.5 per unit weight).
  static constexpr double kAnchors[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  constexpr int kLevels = 64;
  t = std::clamp(std::isfinite(t) ? t : 0.0, 0.0, 1.0);
  const double x = std::round(t * (kLevels - 1)) / (kLevels - 1) * 4;
  const int i = std::min(3, static_cast<int>(x));
  const double f = x - i;
  std::array<uint8_t, 3> c{};
  for (int k = 0; k < 3; ++k) c[k] = static_cast<uint8_t>(std::lround(kAnchors[i][k] + f * (kAnchors[i + 1][k] - kAnchors[i][k])));
  return c;
}

std::string png_heatmap(const std::vector<int64_t>& values, int rows, int cols, int cell, int* width, int* height) {
  CMOE_CHECK(rows > 0 && cols > 0 && cell > 0 && values.size() == static_cast<size_t>(rows) * cols, "heatmap: ", rows,
             " x ", cols, " cells of ", cell, " px for ", values.size(), " values");
  const int64_t mx = std::max<int64_t>(1, *std::max_element(values.begin(), values.end()));
  const int w = cols * cell, h = rows * cell;
  std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const auto c = colormap_rgb(static_cast<double>(values[(y / cell) * cols + x / cell]) / static_cast<double>(mx));
      std::copy(c.begin(), c.end(), rgb.begin() + (static_cast<size_t>(y) * w + x) * 3);
    }
  }
  *width = w;
  *height = h;
  return png_encode_rgb(w, h, rgb);
}

}  // namespace cmoe
