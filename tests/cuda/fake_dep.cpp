// fake_dep.cpp — a library the missing_dep fake plugin needs and the loader cannot find (it is
// built outside every search path), so its dlopen fails the way a missing libcudart does.
extern "C" __attribute__((visibility("default"))) int cmoe_fake_dep_answer() { return 42; }
