#include "common/build_info.h"

#include "otd_build_config.h"

namespace otd {

const BuildInfo& GetBuildInfo() {
  static const BuildInfo info{.version = OTD_VERSION,
                              .git = OTD_GIT_DESCRIBE,
                              .compiler = OTD_COMPILER,
                              .build_type = OTD_BUILD_TYPE,
                              .libraries = {{"openssl", OTD_OPENSSL_VERSION},
                                            {"lmdb", OTD_LMDB_VERSION},
                                            {"libpq", OTD_LIBPQ_VERSION},
                                            {"p11-kit", OTD_P11KIT_VERSION},
                                            {"boost", OTD_BOOST_VERSION}}};
  return info;
}

std::string VersionText(std::string_view program) {
  const BuildInfo& b = GetBuildInfo();
  std::string out =
      std::string(program) + " " + std::string(b.version) + " (git " + std::string(b.git) + ")\n";
  out += "build: " + std::string(b.build_type) + ", " + std::string(b.compiler) + "\n";
  out += "libraries:";
  for (const auto& [name, version] : b.libraries) {
    out += " " + std::string(name) + " " + std::string(version.empty() ? "?" : version);
  }
  out += "\n";
  return out;
}

}  // namespace otd
