// rusage_exec FD COMMAND [ARG]...: runs COMMAND, waits for it and writes one
// line to file descriptor FD (which COMMAND does not inherit):
//
//   status S maxrss_kib M utime_us U stime_us T
//
// S is the exit status (128 + N for a signal N). measure.py launches every
// VMM through this, built static: a process's peak RSS (ru_maxrss) counts
// the memory of whatever process it was forked from until its exec, so a
// VMM spawned straight from Python reports Python's ~15 MiB whatever its
// own peak. Forked from this program instead, the floor is this program's
// own footprint (about 100 KiB, static).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char** argv) {
  char* end;
  long fd = argc < 3 ? -1 : strtol(argv[1], &end, 10);
  if (argc < 3 || *end != '\0' || fd < 0 || fd > 1 << 20) {
    fprintf(stderr, "usage: rusage_exec FD COMMAND [ARG]... (the result goes to FD)\n");
    return 2;
  }
  if (fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0) {
    fprintf(stderr, "rusage_exec: file descriptor %ld is not open: %s\n", fd, strerror(errno));
    return 2;
  }
  pid_t pid = fork();
  if (pid < 0) {
    perror("rusage_exec: fork");
    return 2;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // killed with the launcher (measure.py's timeout)
    execvp(argv[2], argv + 2);
    fprintf(stderr, "rusage_exec: cannot run %s: %s\n", argv[2], strerror(errno));
    _exit(127);
  }
  int status;
  struct rusage ru;
  while (wait4(pid, &status, 0, &ru) < 0)
    if (errno != EINTR) {
      perror("rusage_exec: wait4");
      return 2;
    }
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  dprintf((int)fd, "status %d maxrss_kib %ld utime_us %ld stime_us %ld\n", code, ru.ru_maxrss,
          ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec,
          ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec);
  return 0;
}
