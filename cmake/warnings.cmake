# Warnings every skiff target is built with (STYLE.md: warnings as errors in CI).
set(SKIFF_WARNINGS -Wall -Wextra -Wconversion -Wshadow -Wno-missing-field-initializers)
if(SKIFF_WERROR)
  list(APPEND SKIFF_WARNINGS -Werror)
endif()

# skiff_library(name SOURCES ... DEPS ...): a static library for one layer.
function(skiff_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/src ${CMAKE_BINARY_DIR}/generated)
  target_compile_options(${name} PRIVATE ${SKIFF_WARNINGS})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
endfunction()

# skiff_test(name SOURCES ... DEPS ...): a GoogleTest executable registered with CTest.
# skiff_python_test(name MODULE m LABELS l TIMEOUT s): a Python unittest
# module of the current source folder, run with SKIFF_BUILD_DIR set.
function(skiff_python_test name)
  cmake_parse_arguments(ARG "" "MODULE;TIMEOUT" "LABELS;ENVIRONMENT" ${ARGN})
  find_package(Python3 COMPONENTS Interpreter REQUIRED)
  add_test(NAME ${name}
    COMMAND ${Python3_EXECUTABLE} -m unittest -v ${ARG_MODULE}
    WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
  set(env SKIFF_BUILD_DIR=${CMAKE_BINARY_DIR} ${ARG_ENVIRONMENT})
  set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT}
    ENVIRONMENT "${env}")
endfunction()

function(skiff_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  skiff_test_target(${name})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 30 PROPERTIES LABELS "${ARG_LABELS}")
endfunction()
