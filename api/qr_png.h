#pragma once
// QR codes as PNG images, for the TOTP enrolment link (GET /registration/{id}/qr).
//
// The text is usually a secret (an otpauth:// URI carrying the TOTP seed): it is never logged,
// and the intermediate module matrix and pixel buffer are wiped before they are freed. The PNG
// returned encodes the text, so it is exactly as secret: callers should not log or cache it.
//
// Thread safety: QrCodePng may run concurrently (libqrencode is built with pthread support; the
// libpng simplified API keeps all state in the call).

#include <cstddef>
#include <string>
#include <string_view>

#include "common/status.h"

namespace otd::api {

// Longest text accepted (byte mode at ECC level M holds at most 2331 bytes, in version 40).
inline constexpr size_t kMaxQrTextBytes = 2048;

// Encodes `text` (any bytes) in byte mode at error-correction level M, using the smallest version
// that fits, and renders it as an 8-bit grayscale PNG: black modules on white, each module
// `module_pixels` square, surrounded by `margin_modules` modules of white quiet zone (ISO/IEC
// 18004 asks for 4). The image is (qr width + 2 * margin_modules) * module_pixels pixels square.
//
// kInvalidArgument: empty text, text longer than kMaxQrTextBytes, module_pixels outside [1, 32]
// or margin_modules outside [0, 16]. kResourceExhausted: out of memory. kInternal: the encoder or
// libpng failed otherwise. Messages never contain the text.
Result<std::string> QrCodePng(std::string_view text, int module_pixels = 6, int margin_modules = 4);

}  // namespace otd::api
