# expect_job_fails.cmake — runs an MPI job that must fail, and checks how it fails:
# a non-zero exit, within MAX_SECONDS, with output matching EXPECT_REGEX. CTest cannot check
# all three (PASS_REGULAR_EXPRESSION ignores the exit code), hence this script.
#   cmake -DCMD="mpiexec|-np|4|...|comm_fault|stall" -DEXPECT_REGEX=... -DMAX_SECONDS=20 -P expect_job_fails.cmake
foreach(var CMD EXPECT_REGEX MAX_SECONDS)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "expect_job_fails.cmake: -D${var}=... is required")
  endif()
endforeach()
string(REPLACE "|" ";" CMD "${CMD}")
string(TIMESTAMP t0 "%s")
# The hard limit kills a hung launcher so the test itself can never hang.
math(EXPR hard_limit "${MAX_SECONDS} + 10")
execute_process(COMMAND ${CMD} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out
                TIMEOUT ${hard_limit})
string(TIMESTAMP t1 "%s")
math(EXPR elapsed "${t1} - ${t0}")
message("---- job output (exit: ${rc}, ${elapsed} s) ----\n${out}---- end of job output ----")
if(rc STREQUAL "0")
  message(FATAL_ERROR "the job exited 0; it should have failed")
endif()
if(NOT rc MATCHES "^[0-9]+$")
  message(FATAL_ERROR "the job did not exit by itself: ${rc}")
endif()
if(elapsed GREATER MAX_SECONDS)
  message(FATAL_ERROR "the job took ${elapsed} s to fail; the limit is ${MAX_SECONDS} s")
endif()
if(NOT out MATCHES "${EXPECT_REGEX}")
  message(FATAL_ERROR "the output does not match: ${EXPECT_REGEX}")
endif()
message("ok: exit ${rc} after ${elapsed} s, output matches")
