// check.h — cmoe's two error channels.
//
// CMOE_CHECK(cond, msg...) guards invariants: a failure is a bug in cmoe, so it prints file,
// line, the condition and the message, then aborts. It is always on (never compiled out) and
// its condition must have no side effects. Anything a user can cause (I/O, configs, data,
// checkpoints, communication) returns absl::Status / absl::StatusOr instead.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace cmoe {

[[noreturn]] void check_fail(const char* file, int line, const char* cond, const std::string& msg);

}  // namespace cmoe

#define CMOE_CHECK(cond, ...)                                                        \
  do {                                                                               \
    if (!(cond)) [[unlikely]] {                                                      \
      ::cmoe::check_fail(__FILE__, __LINE__, #cond, ::absl::StrCat(__VA_ARGS__)); \
    }                                                                                \
  } while (0)

// Returns early from a function returning Status/StatusOr when `expr` is not OK.
#define CMOE_RETURN_IF_ERROR(expr)              \
  do {                                          \
    ::absl::Status cmoe_status_ = (expr);       \
    if (!cmoe_status_.ok()) return cmoe_status_; \
  } while (0)

#define CMOE_CONCAT_INNER_(a, b) a##b
#define CMOE_CONCAT_(a, b) CMOE_CONCAT_INNER_(a, b)
// CMOE_ASSIGN_OR_RETURN(auto x, MakeX()); assigns the value or returns the error.
#define CMOE_ASSIGN_OR_RETURN(lhs, expr) \
  CMOE_ASSIGN_OR_RETURN_IMPL_(CMOE_CONCAT_(cmoe_statusor_, __LINE__), lhs, expr)
#define CMOE_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()
