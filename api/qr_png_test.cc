#include "api/qr_png.h"
#include "common/testing/status_matchers.h"

#include <png.h>
#include <qrencode.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace otd::api {
namespace {

const std::string kOtpauth =
    "otpauth://totp/OpenToken:alice%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    "&issuer=OpenToken&algorithm=SHA1&digits=6&period=30";

uint32_t BigEndian32(const std::string& s, size_t pos) {
  return (uint32_t{static_cast<uint8_t>(s[pos])} << 24) |
         (uint32_t{static_cast<uint8_t>(s[pos + 1])} << 16) |
         (uint32_t{static_cast<uint8_t>(s[pos + 2])} << 8) |
         uint32_t{static_cast<uint8_t>(s[pos + 3])};
}

// The symbol width libqrencode picks for `text` with the settings QrCodePng uses.
int QrWidth(const std::string& text) {
  QRcode* qr =
      QRcode_encodeData(static_cast<int>(text.size()),
                        reinterpret_cast<const unsigned char*>(text.data()), 0, QR_ECLEVEL_M);
  if (qr == nullptr) {
    return -1;
  }
  int w = qr->width;
  QRcode_free(qr);
  return w;
}

struct Gray {
  uint32_t width = 0;
  uint32_t height = 0;
  std::vector<uint8_t> pixels;
  uint8_t at(uint32_t x, uint32_t y) const { return pixels[size_t{y} * width + x]; }
};

// Decodes with libpng's simplified read API, converting to 8-bit gray.
bool DecodePng(const std::string& png, Gray& out) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  if (png_image_begin_read_from_memory(&image, png.data(), png.size()) == 0) {
    return false;
  }
  image.format = PNG_FORMAT_GRAY;
  out.width = image.width;
  out.height = image.height;
  out.pixels.resize(PNG_IMAGE_SIZE(image));
  if (png_image_finish_read(&image, nullptr, out.pixels.data(), 0, nullptr) == 0) {
    png_image_free(&image);
    return false;
  }
  return true;
}

TEST(QrPngTest, OutputIsAPngOfTheExpectedSize) {
  auto png = QrCodePng(kOtpauth, 6, 4);
  ASSERT_OK(png);
  const std::string signature = "\x89PNG\r\n\x1a\n";
  ASSERT_GT(png->size(), 33u);
  EXPECT_EQ(png->substr(0, 8), signature);
  EXPECT_EQ(png->substr(12, 4), "IHDR");
  int qr_width = QrWidth(kOtpauth);
  ASSERT_GT(qr_width, 20);
  const uint32_t expected = static_cast<uint32_t>((qr_width + 2 * 4) * 6);
  EXPECT_EQ(BigEndian32(*png, 16), expected);
  EXPECT_EQ(BigEndian32(*png, 20), expected);
  EXPECT_EQ(static_cast<uint8_t>((*png)[24]), 8);  // bit depth
  EXPECT_EQ(static_cast<uint8_t>((*png)[25]), 0);  // colour type: grayscale
}

TEST(QrPngTest, SizeFollowsModulePixelsAndMargin) {
  int qr_width = QrWidth("hello");
  auto png = QrCodePng("hello", 3, 0);
  ASSERT_OK(png);
  EXPECT_EQ(BigEndian32(*png, 16), static_cast<uint32_t>(qr_width * 3));
  png = QrCodePng("hello", 1, 16);
  ASSERT_OK(png);
  EXPECT_EQ(BigEndian32(*png, 16), static_cast<uint32_t>(qr_width + 32));
}

TEST(QrPngTest, FinderPatternIsBlackAndQuietZoneIsWhite) {
  const int px = 6;
  const int margin = 4;
  auto png = QrCodePng(kOtpauth, px, margin);
  ASSERT_OK(png);
  Gray img;
  ASSERT_TRUE(DecodePng(*png, img));
  ASSERT_EQ(img.width, img.height);
  auto module = [&](int mx, int my) {  // pixel at the centre of module (mx, my), quiet zone < 0
    return img.at(static_cast<uint32_t>((margin + mx) * px + px / 2),
                  static_cast<uint32_t>((margin + my) * px + px / 2));
  };
  // Top-left finder pattern: 7x7 modules, dark centre 3x3, light ring at distance 2.
  EXPECT_EQ(module(3, 3), 0);
  EXPECT_EQ(module(0, 0), 0);
  EXPECT_EQ(module(6, 6), 0);
  EXPECT_EQ(module(1, 1), 255);
  EXPECT_EQ(module(7, 7), 255);  // separator
  // Quiet zone: the whole border band.
  const uint32_t band = static_cast<uint32_t>(margin * px);
  for (uint32_t i = 0; i < img.width; ++i) {
    for (uint32_t d = 0; d < band; ++d) {
      ASSERT_EQ(img.at(i, d), 255) << i << "," << d;
      ASSERT_EQ(img.at(d, i), 255) << d << "," << i;
      ASSERT_EQ(img.at(i, img.height - 1 - d), 255);
      ASSERT_EQ(img.at(img.width - 1 - d, i), 255);
    }
  }
  // Only pure black and white.
  for (uint8_t p : img.pixels) {
    ASSERT_TRUE(p == 0 || p == 255);
  }
}

TEST(QrPngTest, ZbarimgDecodesTheText) {
  if (std::system("command -v zbarimg >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "zbarimg (Debian zbar-tools) is not installed";
  }
  for (const std::string& text : {kOtpauth, std::string("hello"), std::string(600, 'x')}) {
    auto png = QrCodePng(text);
    ASSERT_OK(png);
    std::string path = ::testing::TempDir() + "otd_qr_test_XXXXXX";
    std::vector<char> tmpl(path.begin(), path.end());
    tmpl.push_back('\0');
    int fd = mkstemp(tmpl.data());
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, png->data(), png->size()), static_cast<ssize_t>(png->size()));
    close(fd);
    std::string cmd = std::string("zbarimg --raw -q ") + tmpl.data() + " 2>/dev/null";
    std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
    ASSERT_TRUE(pipe);
    std::string decoded;
    char buf[4096];
    size_t n = 0;
    while ((n = fread(buf, 1, sizeof(buf), pipe.get())) > 0) {
      decoded.append(buf, n);
    }
    pipe.reset();
    unlink(tmpl.data());
    while (!decoded.empty() && decoded.back() == '\n') {
      decoded.pop_back();
    }
    EXPECT_EQ(decoded, text);
  }
}

TEST(QrPngTest, EmptyTextIsRejected) {
  auto png = QrCodePng("");
  EXPECT_EQ(png.status().code(), Code::kInvalidArgument);
}

TEST(QrPngTest, TextOverTheLimitIsRejectedWithoutEchoingIt) {
  std::string big(kMaxQrTextBytes + 1, 'q');
  auto png = QrCodePng(big);
  EXPECT_EQ(png.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(png.status().message().find("qqqq"), std::string::npos);
  EXPECT_OK(QrCodePng(std::string(kMaxQrTextBytes, 'q')));
}

TEST(QrPngTest, BinaryTextWithNulIsEncoded) {
  std::string text("a\0b", 3);
  EXPECT_OK(QrCodePng(text));
}

TEST(QrPngTest, BadSizesAreRejected) {
  EXPECT_EQ(QrCodePng("x", 0, 4).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(QrCodePng("x", 33, 4).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(QrCodePng("x", 6, -1).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(QrCodePng("x", 6, 17).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace otd::api
