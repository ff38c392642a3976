#pragma once
// A QR code for the terminal: libqrencode's matrix drawn with UTF-8 half blocks (two modules per
// character cell), light modules as blocks and a 2-module quiet zone, so it scans on a terminal
// with a dark background (the common default) as `qrencode -t UTF8` does.

#include <string>
#include <string_view>
#include <vector>

#include "opentoken/client.h"

namespace opentoken::cli {

// The lines of the code, each ending in "\n"; kLocal error when the text does not fit a QR code.
Result<std::string> RenderQr(std::string_view text);

// The same from a module matrix (row-major, true = dark), for tests.
std::string RenderModules(const std::vector<std::vector<bool>>& dark);

}  // namespace opentoken::cli
