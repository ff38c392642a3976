# Build rules shared by every module: one library target per folder, dependencies listed
# explicitly (PRIVATE unless a public header needs them), tests beside the code.

set(OTD_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wnon-virtual-dtor -Wcast-align
    -Wno-missing-field-initializers)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  # GCC 12 false positives in libstdc++ string code (GCC bugs 105329, 105651).
  list(APPEND OTD_WARNINGS -Wno-restrict -Wno-stringop-overflow)
endif()
if(OTD_WERROR)
  list(APPEND OTD_WARNINGS -Werror)
endif()
set(OTD_HARDENING -fstack-protector-strong -fvisibility=hidden)
if(CMAKE_BUILD_TYPE STREQUAL "Release")
  list(APPEND OTD_HARDENING -D_FORTIFY_SOURCE=2)
endif()
add_link_options(-Wl,-z,relro,-z,now -pie)

# Per-module include roots (issue 15: layering checked by the build). A module's headers are
# reachable as "<dir>/<file>.h" only through its own root, build/include_roots/<dir>/, which holds
# one link, <dir> -> the module's folder. A target gets its own root and the roots of what it
# links, so `#include "store/..."` in a module that does not link otd::store fails to compile.
# (What a module may link is the DESIGN's direction; scripts/lint checks that includes follow it
# through PUBLIC dependencies too.)
function(otd_include_root dir out)
  set(root ${CMAKE_BINARY_DIR}/include_roots/${dir})
  if(NOT EXISTS ${root}/${dir})
    file(MAKE_DIRECTORY ${root})
    file(CREATE_LINK ${CMAKE_SOURCE_DIR}/${dir} ${root}/${dir} SYMBOLIC)
  endif()
  set(${out} ${root} PARENT_SCOPE)
endfunction()

# otd_library(NAME n [DIR folder] SRCS ... DEPS ... PUBLIC_DEPS ...)
function(otd_library)
  cmake_parse_arguments(A "" "NAME;DIR" "SRCS;DEPS;PUBLIC_DEPS" ${ARGN})
  if(NOT A_DIR)
    set(A_DIR ${A_NAME})
  endif()
  add_library(otd_${A_NAME} STATIC ${A_SRCS})
  add_library(otd::${A_NAME} ALIAS otd_${A_NAME})
  otd_include_root(${A_DIR} root)
  target_include_directories(otd_${A_NAME} PUBLIC ${root})
  target_compile_options(otd_${A_NAME} PRIVATE ${OTD_WARNINGS} ${OTD_HARDENING})
  target_link_libraries(otd_${A_NAME} PUBLIC ${A_PUBLIC_DEPS} PRIVATE ${A_DEPS})
endfunction()

# otd_test(NAME n SRCS ... DEPS ... [LABELS ...] [TIMEOUT s] [WHOLE_BINARY])
# WHOLE_BINARY: the binary is one ctest test (for suites sharing an expensive fixture, e.g. a
# PostgreSQL server started once per binary) instead of one ctest test per gtest case.
function(otd_test)
  cmake_parse_arguments(A "WHOLE_BINARY" "NAME;TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 120)
  endif()
  if(NOT A_LABELS)
    set(A_LABELS unit)
  endif()
  add_executable(${A_NAME} ${A_SRCS})
  # Tests may reach anything (tests/support, fakes in other modules' testing/ folders).
  target_include_directories(${A_NAME} PRIVATE ${CMAKE_SOURCE_DIR})
  target_compile_options(${A_NAME} PRIVATE ${OTD_WARNINGS})
  target_link_libraries(${A_NAME} PRIVATE ${A_DEPS} GTest::gtest GTest::gtest_main GTest::gmock)
  set_target_properties(${A_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  if(A_WHOLE_BINARY)
    add_test(NAME ${A_NAME} COMMAND ${A_NAME})
    set_tests_properties(${A_NAME} PROPERTIES LABELS "${A_LABELS}" TIMEOUT "${A_TIMEOUT}"
      ENVIRONMENT "OTD_SOURCE_DIR=${CMAKE_SOURCE_DIR};OTD_BIN_DIR=${CMAKE_BINARY_DIR}/bin")
    return()
  endif()
  gtest_discover_tests(${A_NAME}
    PROPERTIES LABELS "${A_LABELS}" TIMEOUT "${A_TIMEOUT}"
    ENVIRONMENT "OTD_PKCS11_MODULE=${OTD_TEST_PKCS11_MODULE};OTD_SOURCE_DIR=${CMAKE_SOURCE_DIR};OTD_BIN_DIR=${CMAKE_BINARY_DIR}/bin"
    DISCOVERY_TIMEOUT 60)
endfunction()
include(GoogleTest)
