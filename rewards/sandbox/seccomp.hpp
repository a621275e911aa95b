// The seccomp filter of every sandbox (bwrap --seccomp): everything a Python test harness needs is
// allowed; what could reach another process's memory or descriptors, or the kernel's global state,
// fails with EPERM: ptrace, process_vm_readv/writev, pidfd_getfd, kcmp, process_madvise, perf
// events, bpf, userfaultfd, io_uring (whose operations seccomp cannot see), keyrings, mounts and
// namespaces, modules, kexec, reboot, swap, clocks, accounting, quotas, the kernel log, ioperm/iopl.
// System calls of another architecture (i386, x32) kill the process.
#pragma once
#include <string>
#include <vector>

namespace r1::sandbox {

// The compiled classic-BPF program (made once per process).
const std::string& seccomp_program();

// The system calls the filter refuses, by name (for tests and docs).
const std::vector<std::string>& seccomp_denied();

}  // namespace r1::sandbox
