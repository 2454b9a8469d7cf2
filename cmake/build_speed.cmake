# Build speed. A CI run builds skiff twice from nothing (release, then
# ASan+UBSan) on two cores; these keep it well inside the time CI has.
# (The largest saving is elsewhere: base/log.h keeps spdlog's templates out
# of the files that log.)
#
# Tests: their own code is compiled without optimisation (the
# code under test keeps -O2; GoogleTest's macros made the test files the
# slowest to compile at -O2), and with one precompiled header of
# GoogleTest, fmt and the standard library (skiff_test_pch), built once and
# reused by every test target. It is force-included, so test code that
# forgets an include still builds: a -DSKIFF_PCH=OFF build checks that.
#
# Linker: lld where the compiler can use it (it links the ASan test
# programs in half the time of GNU ld).
option(SKIFF_PCH "Precompile GoogleTest, fmt and the standard headers for the tests" ON)

include(CheckLinkerFlag)
check_linker_flag(CXX -fuse-ld=lld SKIFF_HAVE_LLD)
set(SKIFF_LINKER_OPTIONS "")
if(SKIFF_HAVE_LLD)
  set(SKIFF_LINKER_OPTIONS -fuse-ld=lld)
endif()

# What the tests' own files are optimised with, after the build type's flags.
set(SKIFF_TEST_OPTIMIZE $<$<CONFIG:RelWithDebInfo,Release>:-O0>)

if(SKIFF_PCH AND SKIFF_TESTS)
  find_package(GTest REQUIRED)
  set(pch_source ${CMAKE_BINARY_DIR}/generated/test_pch.cc)
  file(WRITE ${pch_source} "// The tests' precompiled header's owner: no code.\n")
  add_library(skiff_test_pch STATIC ${pch_source})
  target_compile_options(skiff_test_pch PRIVATE ${SKIFF_WARNINGS} -Wno-conversion ${SKIFF_TEST_OPTIMIZE})
  target_compile_definitions(skiff_test_pch PRIVATE SPDLOG_COMPILED_LIB SPDLOG_FMT_EXTERNAL)
  target_link_libraries(skiff_test_pch PRIVATE GTest::gtest GTest::gmock)
  target_precompile_headers(skiff_test_pch PRIVATE
    <algorithm> <array> <atomic> <chrono> <cstdint> <cstring> <expected> <filesystem>
    <fstream> <functional> <map> <memory> <mutex> <optional> <random> <span> <string>
    <string_view> <thread> <vector> <fmt/format.h> <gtest/gtest.h> <gmock/gmock.h>)
endif()

# skiff_test_target(target): a test program's compile and link options.
function(skiff_test_target name)
  target_compile_options(${name} PRIVATE ${SKIFF_WARNINGS} -Wno-conversion ${SKIFF_TEST_OPTIMIZE})
  target_link_options(${name} PRIVATE ${SKIFF_LINKER_OPTIONS})
  if(TARGET skiff_test_pch)
    target_precompile_headers(${name} REUSE_FROM skiff_test_pch)
  endif()
endfunction()
