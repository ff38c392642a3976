#include "api/qr_png.h"

#include <png.h>
#include <qrencode.h>
#include <openssl/crypto.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>

#include "common/secret_bytes.h"

namespace otd::api {

namespace {

// The module matrix spells out the text: wiped before it is freed.
struct QrCodeFree {
  void operator()(QRcode* q) const noexcept {
    if (q != nullptr) {
      if (q->data != nullptr && q->width > 0) {
        OPENSSL_cleanse(q->data, static_cast<size_t>(q->width) * static_cast<size_t>(q->width));
      }
      QRcode_free(q);
    }
  }
};
using QrCodePtr = std::unique_ptr<QRcode, QrCodeFree>;

// png_image_free is safe on a finished or failed image; this makes it run on every path.
struct PngImageFree {
  void operator()(png_image* image) const noexcept { png_image_free(image); }
};

}  // namespace

Result<std::string> QrCodePng(std::string_view text, int module_pixels, int margin_modules) {
  if (text.empty()) {
    return InvalidArgument("QR code text is empty");
  }
  if (text.size() > kMaxQrTextBytes) {
    return InvalidArgument("QR code text is too long");
  }
  if (module_pixels < 1 || module_pixels > 32 || margin_modules < 0 || margin_modules > 16) {
    return InvalidArgument("QR code size out of range");
  }

  // Byte mode (QRcode_encodeData), not QRcode_encodeString: binary-safe, no NUL terminator.
  errno = 0;
  QrCodePtr qr(QRcode_encodeData(static_cast<int>(text.size()),
                                 reinterpret_cast<const unsigned char*>(text.data()), 0,
                                 QR_ECLEVEL_M));
  if (!qr) {
    if (errno == ERANGE) {
      return InvalidArgument("QR code text is too long");
    }
    if (errno == ENOMEM) {
      return ResourceExhausted("out of memory encoding a QR code");
    }
    return Internal("QR encoding failed");
  }

  const size_t width = static_cast<size_t>(qr->width);
  const size_t px = static_cast<size_t>(module_pixels);
  const size_t margin = static_cast<size_t>(margin_modules);
  const size_t side = (width + 2 * margin) * px;  // at most (177 + 32) * 32

  // One byte per pixel, 0x00 black, 0xFF white. SecretBytes: wiped (and on the secure heap when
  // there is one), since the image is the text in another form.
  SecretBytes pixels(side * side);
  auto buf = pixels.MutableReveal(SecretAccess::Grant());
  std::memset(buf.data(), 0xFF, buf.size());
  for (size_t y = 0; y < width; ++y) {
    for (size_t x = 0; x < width; ++x) {
      // qrencode.h: bit 0 of each byte is the module colour (1 = black).
      if ((qr->data[y * width + x] & 1) == 0) {
        continue;
      }
      for (size_t dy = 0; dy < px; ++dy) {
        uint8_t* row = buf.data() + ((margin + y) * px + dy) * side + (margin + x) * px;
        std::memset(row, 0x00, px);
      }
    }
  }
  qr.reset();

  // libpng's simplified API: its error handling (setjmp/longjmp) stays inside libpng, so no C++
  // frame is ever jumped over.
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(side);
  image.height = static_cast<png_uint_32>(side);
  image.format = PNG_FORMAT_GRAY;
  std::unique_ptr<png_image, PngImageFree> image_guard(&image);

  // Compressed output never exceeds this bound, so one pass suffices.
  png_alloc_size_t capacity = PNG_IMAGE_PNG_SIZE_MAX(image);
  SecretBytes scratch(static_cast<size_t>(capacity));
  png_alloc_size_t size = capacity;
  if (png_image_write_to_memory(&image, scratch.MutableReveal(SecretAccess::Grant()).data(), &size,
                                /*convert_to_8bit=*/0, buf.data(), /*row_stride=*/0,
                                /*colormap=*/nullptr) == 0 ||
      size > capacity) {
    // image.message is libpng's own text; it never contains pixel data.
    return Internal(std::string("PNG encoding failed: ") + image.message);
  }
  auto written = scratch.Reveal(SecretAccess::Grant()).first(static_cast<size_t>(size));
  return std::string(reinterpret_cast<const char*>(written.data()), written.size());
}

}  // namespace otd::api
