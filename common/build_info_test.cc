#include "common/build_info.h"

#include <gtest/gtest.h>

namespace otd {
namespace {

TEST(BuildInfo, NamesTheProjectVersionAndTheBuild) {
  const BuildInfo& b = GetBuildInfo();
  EXPECT_FALSE(b.version.empty());
  EXPECT_FALSE(b.git.empty());
  EXPECT_FALSE(b.compiler.empty());
  const std::string text = VersionText("opentokend");
  EXPECT_EQ(text.rfind("opentokend " + std::string(b.version) + " (git ", 0), 0u) << text;
  EXPECT_NE(text.find("lmdb "), std::string::npos) << text;
  EXPECT_NE(text.find("libpq "), std::string::npos) << text;
}

}  // namespace
}  // namespace otd
