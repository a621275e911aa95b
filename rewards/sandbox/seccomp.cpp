#include "rewards/sandbox/seccomp.hpp"

#include <seccomp.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "common/error.hpp"

namespace r1::sandbox {

const std::vector<std::string>& seccomp_denied() {
  static const std::vector<std::string> names = {"ptrace",
                                                 "process_vm_readv",
                                                 "process_vm_writev",
                                                 "pidfd_getfd",
                                                 "kcmp",
                                                 "process_madvise",
                                                 "perf_event_open",
                                                 "bpf",
                                                 "userfaultfd",
                                                 "io_uring_setup",
                                                 "io_uring_enter",
                                                 "io_uring_register",
                                                 "keyctl",
                                                 "add_key",
                                                 "request_key",
                                                 "mount",
                                                 "umount2",
                                                 "pivot_root",
                                                 "chroot",
                                                 "unshare",
                                                 "setns",
                                                 "open_by_handle_at",
                                                 "name_to_handle_at",
                                                 "fsopen",
                                                 "fsmount",
                                                 "fsconfig",
                                                 "move_mount",
                                                 "open_tree",
                                                 "init_module",
                                                 "finit_module",
                                                 "delete_module",
                                                 "kexec_load",
                                                 "kexec_file_load",
                                                 "reboot",
                                                 "swapon",
                                                 "swapoff",
                                                 "acct",
                                                 "quotactl",
                                                 "syslog",
                                                 "settimeofday",
                                                 "clock_settime",
                                                 "clock_adjtime",
                                                 "adjtimex",
                                                 "lookup_dcookie",
                                                 "vhangup",
                                                 "iopl",
                                                 "ioperm",
                                                 "move_pages",
                                                 "migrate_pages",
                                                 "personality",
                                                 "fanotify_init"};
  return names;
}

namespace {

std::string compile_program() {
  std::unique_ptr<void, decltype(&seccomp_release)> ctx(seccomp_init(SCMP_ACT_ALLOW), &seccomp_release);
  R1_CHECK(ctx, "sandbox: seccomp_init failed");
  // Only the native architecture: an i386 or x32 system call would bypass the rules below.
  R1_CHECK(seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) == 0,
           "sandbox: seccomp: cannot set the bad-architecture action");
  for (const auto& name : seccomp_denied()) {
    const int nr = seccomp_syscall_resolve_name(name.c_str());
    if (nr == __NR_SCMP_ERROR) continue;  // not a system call of this architecture
    const int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), nr, 0);
    R1_CHECK(rc == 0, "sandbox: seccomp: cannot deny {}: {}", name, std::strerror(-rc));
  }
  const int fd = static_cast<int>(::syscall(SYS_memfd_create, "r1-seccomp", MFD_CLOEXEC));
  R1_CHECK(fd >= 0, "sandbox: memfd_create failed: {}", std::strerror(errno));
  const int rc = seccomp_export_bpf(ctx.get(), fd);
  std::string out;
  if (rc == 0) {
    ::lseek(fd, 0, SEEK_SET);
    char buf[4096];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  R1_CHECK(rc == 0 && !out.empty(), "sandbox: seccomp: cannot export the filter: {}", std::strerror(-rc));
  return out;
}

}  // namespace

const std::string& seccomp_program() {
  static const std::string program = compile_program();
  return program;
}

}  // namespace r1::sandbox
