// exec_timer.cpp — start-up time of a command: fork/exec it N times and report the median and
// p90 of the wall time (fork to reaped exit), with the median CPU time (user + system) and minor
// page faults of the child. bench/startup_bench.sh drives it for the cmoe commands.
//
//   exec_timer [--runs N] [--warmup W] [--label TEXT] -- COMMAND [ARGS...]
// The child's stdout and stderr go to /dev/null; a non-zero exit fails the measurement (exit 1)
// so a broken command is never timed as a fast one. Output: one line,
//   LABEL  median_ms p90_ms min_ms  cpu_ms  minflt
// Speed is measured here, in bench/, never in timed tests.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Run {
  double wall_ms;
  double cpu_ms;
  long minflt;
};

double now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// One fork/exec/wait of argv; false (with a message) if it could not run or exited non-zero.
bool run_once(char** argv, Run* out) {
  const double t0 = now_ms();
  const pid_t pid = fork();
  if (pid < 0) {
    std::perror("exec_timer: fork");
    return false;
  }
  if (pid == 0) {
    const int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
      dup2(null, STDOUT_FILENO);
      dup2(null, STDERR_FILENO);
    }
    execvp(argv[0], argv);
    _exit(127);
  }
  int status = 0;
  rusage ru{};
  if (wait4(pid, &status, 0, &ru) != pid) {
    std::perror("exec_timer: wait4");
    return false;
  }
  const double t1 = now_ms();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "exec_timer: %s exited with status %d\n", argv[0],
                 WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return false;
  }
  out->wall_ms = t1 - t0;
  out->cpu_ms = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
                (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
  out->minflt = ru.ru_minflt;
  return true;
}

// The q-quantile (nearest rank) of v, sorted in place.
double quantile(std::vector<double>& v, double q) {
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(q * static_cast<double>(v.size()) + 0.5);
  i = std::min(i == 0 ? 0 : i - 1, v.size() - 1);
  return v[i];
}

int usage() {
  std::fputs("usage: exec_timer [--runs N] [--warmup W] [--label TEXT] -- COMMAND [ARGS...]\n",
             stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 30, warmup = 3;
  std::string label;
  int i = 1;
  for (; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (i + 1 >= argc) return usage();
    if (a == "--runs") {
      runs = std::atoi(argv[++i]);
    } else if (a == "--warmup") {
      warmup = std::atoi(argv[++i]);
    } else if (a == "--label") {
      label = argv[++i];
    } else {
      return usage();
    }
  }
  if (i >= argc || runs < 1 || warmup < 0) return usage();
  char** cmd = argv + i;
  if (label.empty()) label = cmd[0];
  Run r{};
  for (int w = 0; w < warmup; ++w) {
    if (!run_once(cmd, &r)) return 1;
  }
  std::vector<double> wall, cpu, flt;
  for (int k = 0; k < runs; ++k) {
    if (!run_once(cmd, &r)) return 1;
    wall.push_back(r.wall_ms);
    cpu.push_back(r.cpu_ms);
    flt.push_back(static_cast<double>(r.minflt));
  }
  const double med = quantile(wall, 0.5), p90 = quantile(wall, 0.9), lo = wall.front();
  std::printf("%-44s %8.1f %8.1f %8.1f %8.1f %8.0f\n", label.c_str(), med, p90, lo,
              quantile(cpu, 0.5), quantile(flt, 0.5));
  return 0;
}
