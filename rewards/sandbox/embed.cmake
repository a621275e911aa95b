# cmake -DIN=harness.py -DOUT=harness_py.hpp -DNAME=kHarnessPy -P embed.cmake: the file as a C++
# string_view named NAME.
file(READ ${IN} _text)
string(FIND "${_text}" ")R1EMBED\"" _clash)
if(NOT _clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw-string delimiter )R1EMBED\"")
endif()
get_filename_component(_name ${IN} NAME)
file(WRITE ${OUT}.tmp "// Generated from rewards/sandbox/${_name} by embed.cmake. Do not edit.\n#pragma once\n#include <string_view>\nnamespace r1::sandbox {\ninline constexpr std::string_view ${NAME} = R\"R1EMBED(${_text})R1EMBED\";\n}\n")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
