#pragma once
// What was built: the version, the git description and the toolchain and libraries of the build,
// captured when CMake configured the tree (cmake/BuildInfo.cmake; the generated header is
// included by build_info.cc only, so a changed description recompiles one file). Used by every
// binary's --version, the daemon's start-up log line, the opentokend_build_info metric and the
// backup manifest.
//
// Thread safety: immutable data.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace otd {

struct BuildInfo {
  std::string_view version;     // the CMake project version, e.g. "0.1.0"
  std::string_view git;         // `git describe --tags --always` at configure time, or "unknown"
  std::string_view compiler;    // e.g. "GNU 12.2.0"
  std::string_view build_type;  // e.g. "Release", "Debug+address,undefined"
  // Library versions the build was configured against (pkg-config / CMake): name, version.
  std::vector<std::pair<std::string_view, std::string_view>> libraries;
};

const BuildInfo& GetBuildInfo();

// The `--version` text: "<program> <version> (git <git>)" then one line per build detail.
std::string VersionText(std::string_view program);

}  // namespace otd
