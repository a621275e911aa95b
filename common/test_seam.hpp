// The one seam through which tests make r1 crash at a named point the way a real crash would:
// SIGKILL, no cleanup, no flush. It does nothing unless the environment sets R1_TEST_CRASH:
//
//   R1_TEST_CRASH=after_step:N     die after step N is done (metrics logged, checkpoint written)
//   R1_TEST_CRASH=in_save:N        die halfway through writing step N's checkpoint
//   R1_TEST_CRASH=after_step:N@R   only on rank R (data parallel runs); default: every rank
//
// and, for the trainer's guards, faults it injects the same way:
//
//   R1_TEST_FAULT=nan_grad:N        NaN gradients in step N's backward passes (the loss times NaN);
//                                   with several ranks the all-reduce carries them to every rank
//   R1_TEST_FAULT=nan_grad:N+K@R    steps N to N+K-1, on rank R only
//   R1_TEST_FAULT=lr_spike:N+K      the learning rate of steps N to N+K-1 times 1000, the first
//                                   time each runs (a step run again after a rollback is clean)
//
// tests/test_resume.cpp, tests/test_distributed.cpp, tests/test_precision.cpp and tests/test_guard.cpp use it; nothing
// else should.
#pragma once
#include <cstdint>

namespace r1::test_seam {

enum class Point { after_step, in_save };

// Kills the process when R1_TEST_CRASH names this point, step and rank.
void crash_point(Point point, int64_t step, int64_t rank = 0);

enum class Fault { nan_grad, lr_spike };

// True when R1_TEST_FAULT names this fault for this step and rank.
bool fault_point(Fault fault, int64_t step, int64_t rank = 0);

}  // namespace r1::test_seam
