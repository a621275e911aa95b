// Where r1 finds the files it ships: the embedded demo's config, the tiny models and the demo's
// data, under a folder share/r1 found relative to the running program (never a path compiled in):
//   <program dir>/share/r1     the build tree (CMake links it to the source tree's files)
//   <program dir>/../share/r1  an installed tree (cmake --install --prefix P: P/bin/r1, P/share/r1)
// and from the test executables in build/tests, <program dir>/../share/r1 is the build tree's.
// R1_SHARE_DIR overrides the search.
#pragma once
#include <filesystem>

namespace r1 {

// The folder of the running executable (/proc/self/exe).
std::filesystem::path program_dir();

// share/r1 as above; throws r1::Error naming the places searched when there is none.
std::filesystem::path share_dir();

}  // namespace r1
