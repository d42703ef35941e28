// check.cpp — the invariant-failure path of CMOE_CHECK.
#include "core/check.h"

#include <cstdio>
#include <cstdlib>

namespace cmoe {

void check_fail(const char* file, int line, const char* cond, const std::string& msg) {
  std::fprintf(stderr, "cmoe: internal check failed at %s:%d: %s%s%s\n", file, line, cond,
               msg.empty() ? "" : " — ", msg.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace cmoe
