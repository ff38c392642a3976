# Version and build information (common/build_info.h), captured at CONFIGURE time into
# build/generated/otd_build_config.h. configure_file rewrites the header only when its text
# changes, so an ordinary build is never dirtied by it; the price is that the git description is
# the one of the last configure (re-run cmake, or build from a fresh tree, to refresh it).
# Packagers building from a tarball without .git pass -DOTD_GIT_DESCRIBE=... (e.g. the Debian
# version); without git and without it the field says "unknown".
set(OTD_GIT_DESCRIBE "" CACHE STRING "git description baked into --version (empty: git describe)")
set(OTD_GIT_DESCRIBE_VALUE "${OTD_GIT_DESCRIBE}")
if(OTD_GIT_DESCRIBE_VALUE STREQUAL "")
  find_program(OTD_GIT git)
  if(OTD_GIT)
    execute_process(COMMAND ${OTD_GIT} describe --tags --always
                    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}
                    OUTPUT_VARIABLE OTD_GIT_DESCRIBE_VALUE
                    OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _otd_git_rc)
    if(NOT _otd_git_rc EQUAL 0)
      set(OTD_GIT_DESCRIBE_VALUE "")
    endif()
  endif()
endif()
if(OTD_GIT_DESCRIBE_VALUE STREQUAL "")
  set(OTD_GIT_DESCRIBE_VALUE "unknown")
endif()
set(OTD_BUILD_TYPE_TEXT "${CMAKE_BUILD_TYPE}")
if(CMAKE_CXX_FLAGS MATCHES "-fsanitize=([a-z,]+)")
  string(APPEND OTD_BUILD_TYPE_TEXT "+${CMAKE_MATCH_1}")
endif()
block(SCOPE_FOR VARIABLES PROPAGATE OTD_GENERATED_INCLUDE_DIR)
  set(OTD_GIT_DESCRIBE "${OTD_GIT_DESCRIBE_VALUE}")
  set(OTD_GENERATED_INCLUDE_DIR ${CMAKE_BINARY_DIR}/generated)
  configure_file(${CMAKE_SOURCE_DIR}/cmake/otd_build_config.h.in
                 ${OTD_GENERATED_INCLUDE_DIR}/otd_build_config.h @ONLY)
endblock()
