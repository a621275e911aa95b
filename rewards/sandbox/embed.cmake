# cmake -DIN=harness.py -DOUT=harness_py.hpp -P embed.cmake: the file as a C++ string_view.
file(READ ${IN} _text)
string(FIND "${_text}" ")R1EMBED\"" _clash)
if(NOT _clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw-string delimiter )R1EMBED\"")
endif()
file(WRITE ${OUT}.tmp "// Generated from rewards/sandbox/harness.py by embed.cmake. Do not edit.\n#pragma once\n#include <string_view>\nnamespace r1::sandbox {\ninline constexpr std::string_view kHarnessPy = R\"R1EMBED(${_text})R1EMBED\";\n}\n")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
