#include "cli/qr.h"

#include <qrencode.h>

#include <memory>
#include <string>
#include <vector>

namespace opentoken::cli {

std::string RenderModules(const std::vector<std::vector<bool>>& dark) {
  constexpr int kQuiet = 2;
  const int n = static_cast<int>(dark.size());
  const int size = n + 2 * kQuiet;
  auto is_dark = [&](int row, int col) {
    const int r = row - kQuiet;
    const int c = col - kQuiet;
    if (r < 0 || c < 0 || r >= n || c >= n) {
      return false;
    }
    return static_cast<bool>(dark[static_cast<size_t>(r)][static_cast<size_t>(c)]);
  };
  std::string out;
  for (int row = 0; row < size; row += 2) {
    for (int col = 0; col < size; ++col) {
      const bool top_light = !is_dark(row, col);
      const bool bottom_light = row + 1 < size ? !is_dark(row + 1, col) : true;
      if (top_light && bottom_light) {
        out += "\u2588";  // full block
      } else if (top_light) {
        out += "\u2580";  // upper half
      } else if (bottom_light) {
        out += "\u2584";  // lower half
      } else {
        out += " ";
      }
    }
    out += "\n";
  }
  return out;
}

Result<std::string> RenderQr(std::string_view text) {
  const std::string copy(text);
  std::unique_ptr<QRcode, decltype(&QRcode_free)> code(
      QRcode_encodeString(copy.c_str(), 0, QR_ECLEVEL_L, QR_MODE_8, 1), &QRcode_free);
  if (!code) {
    return Error{Error::Kind::kLocal, 0, "the QR code could not be made", {}};
  }
  const int w = code->width;
  std::vector<std::vector<bool>> dark(static_cast<size_t>(w),
                                      std::vector<bool>(static_cast<size_t>(w)));
  for (int r = 0; r < w; ++r) {
    for (int c = 0; c < w; ++c) {
      dark[static_cast<size_t>(r)][static_cast<size_t>(c)] = (code->data[r * w + c] & 1) != 0;
    }
  }
  return RenderModules(dark);
}

}  // namespace opentoken::cli
